import sys

from captum_neuronpath._cli import main

sys.exit(main())
