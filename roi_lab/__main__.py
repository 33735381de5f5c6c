"""``python -m roi_lab`` runs the ``roi-lab`` command line."""

if __name__ == "__main__":
    from roi_lab.cli import main

    raise SystemExit(main())
