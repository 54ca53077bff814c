"""`python -m workflows`: the journey worker."""

from workflows.worker import main

if __name__ == "__main__":
    main()
