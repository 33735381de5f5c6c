from roi_lab.cli import main

raise SystemExit(main())
