"""`python -m services.legal`: the legal aid service with its activity worker."""

from masar.platform.process import run_sector_main
from services.legal.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("legal", build_components, MIGRATIONS_DIR)
