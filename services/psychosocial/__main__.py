"""`python -m services.psychosocial`: the psychosocial service with its activity worker."""

from masar.platform.process import run_sector_main
from services.psychosocial.app import MIGRATIONS_DIR, build_components

if __name__ == "__main__":
    run_sector_main("psychosocial", build_components, MIGRATIONS_DIR)
