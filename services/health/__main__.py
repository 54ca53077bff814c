"""`python -m services.health`: the health service with its activity worker."""

from masar.platform.process import run_sector_main
from services.health.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("health", build_components, MIGRATIONS_DIR)
