from gitgw.cli import main

raise SystemExit(main())
