"""Packaging for featurebridge.

Also the file Beam's ``--setup_file`` ships to remote workers, so it lists
packages explicitly and keeps install-time logic out.
"""

import setuptools

VERSION = "0.1.0"

# Ranges here; exact pins live in constraints.txt (what CI and `make` install).
# Top-level folders installed as featurebridge.<name>; runner_configs is data.
PACKAGES = ("transforms", "pipelines", "expansion_service", "runner_configs")

REQUIRED = [
    "apache-beam[gcp]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    "tensorflow-transform>=1.21,<1.22",
    "tfx-bsl>=1.21,<1.22",
    # The statistics protos (DatasetFeatureStatisticsList) TFDV and Facets read.
    "tensorflow-metadata>=1.21,<1.22",
    "pyarrow>=25,<26",
    "grpcio>=1.85,<2",
    "grpcio-health-checking>=1.81,<2",
    "protobuf>=6.33,<7",
    "PyYAML>=6,<7",
    "numpy>=2,<3",
    # The analyze report's plots (OUT/report.html) and the CLI's progress display.
    "matplotlib>=3.10,<4",
    "rich>=13,<16",
    # Keras' TensorBoard callback (MODEL/logs); TensorFlow 2.21 no longer installs it.
    "tensorboard>=2.21,<2.22",
]

EXTRAS = {
    "test": ["pytest>=9", "pytest-timeout>=2.4", "hypothesis>=6.170", "selenium>=4.27,<5"],
    "bench": ["pandas>=3", "scikit-learn>=1.9"],
    # Spark ML local[2], one of the benchmark approaches: only `make bench` /
    # `make bench-full` install it (needs Java 17+; not part of setup or test).
    "spark": ["pyspark>=4.1,<4.2", "py4j>=0.10.9.7,<0.10.10"],
}

setuptools.setup(
    name="featurebridge",
    version=VERSION,
    description=(
        "TensorFlow Transform on Apache Beam, exported for serving and "
        "exposed to Java/Flink/Spark through a cross-language expansion service."
    ),
    python_requires=">=3.11,<3.12",
    # One installed name, featurebridge.*, over the folders the repository
    # layout keeps at the top level (editable installs map them the same way).
    packages=[f"featurebridge.{name}" for name in PACKAGES],
    package_dir={f"featurebridge.{name}": name for name in PACKAGES},
    package_data={"featurebridge.runner_configs": ["*.yaml"]},
    license="Apache-2.0",
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["featurebridge=featurebridge.pipelines.cli:console_main"]},
)
