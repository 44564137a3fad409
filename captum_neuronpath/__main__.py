import sys

from captum_neuronpath.cli import main

sys.exit(main())
