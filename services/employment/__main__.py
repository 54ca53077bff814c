"""`python -m services.employment`: the employment service with its activity worker."""

from masar.platform.process import run_sector_main
from services.employment.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("employment", build_components, MIGRATIONS_DIR)
