from clinicbot.cli import main

raise SystemExit(main())
