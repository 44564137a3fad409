from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in Path("captum_neuronpath/__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

hugging_face = ["transformers>=4.40"]
demo = ["scikit-learn>=1.0", "safetensors>=0.4"]
notebooks = ["nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6"]
docs = ["sphinx>=7", "myst-nb>=1.0", "furo"]

setup(
    name="captum-neuronpath",
    version=version["__version__"],
    description=(
        "Influential neuron paths in Vision Transformers (Wang et al., ICLR 2025) as Captum attributions"
    ),
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["captum_neuronpath", "captum_neuronpath.*"]),
    package_data={"captum_neuronpath._report": ["*.html.j2"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "captum>=0.7",
        "timm>=0.9",
        "matplotlib>=3.5",
        "tqdm>=4.60",
        "jinja2>=3.0",
    ],
    extras_require={
        "hf": hugging_face,
        "demo": demo,
        "docs": docs + notebooks,
        "dev": ["pytest>=7", "ruff>=0.6", "hypothesis>=6", "selenium>=4.11"] + hugging_face + demo + notebooks + docs,
    },
    entry_points={"console_scripts": ["neuronpath=captum_neuronpath._cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
