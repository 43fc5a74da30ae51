"""Install deepks-es: the package, its kernels (installed as deepks_es.kernels) and the shipped data."""

from setuptools import setup

setup(
    name="deepks-es",
    version="0.1.0",
    description="DeePKS machine-learned density functional correction for PySCF (PBE -> HSE06 for water)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # deepks_es/kernels and deepks_es/data are links to the top-level kernels/ and data/ folders
    packages=["deepks_es", "deepks_es.cli", "deepks_es.kernels"],
    package_data={"deepks_es": ["data/*.pt", "data/*.md", "data/*.yaml", "data/water/*.xyz", "data/water/*.md"]},
    install_requires=[
        "pyscf==2.14.0",
        "torch==2.13.0",
        "numpy>=1.26,<3",
        "scipy>=1.11",
        "opt_einsum==3.4.0",
        "e3nn==0.6.0",
        "ase==3.29.0",
        "h5py==3.16.0",
        "dask[distributed]==2026.8.0",
        "dpdata==1.1.0",
        "tqdm==4.70.1",
        "pyyaml==6.0.3",
        "matplotlib==3.10.7",
    ],
    # "data": regenerating the thermal training geometries (data/train/make_thermal_clusters.py, GFN2-xTB MD)
    extras_require={"test": ["pytest>=8"], "data": ["tblite==0.8.0"]},
    entry_points={"console_scripts": ["deepks-es=deepks_es.cli:main"]},
)
