"""`python -m services.intake`: the intake service on its port (default 50051)."""

from masar.platform.process import run_sector_main
from services.intake.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("intake", build_components, MIGRATIONS_DIR)
