from masar.cli import run

run()
