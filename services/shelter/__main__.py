"""`python -m services.shelter`: the shelter service with its activity worker."""

from masar.platform.process import run_sector_main
from services.shelter.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("shelter", build_components, MIGRATIONS_DIR)
