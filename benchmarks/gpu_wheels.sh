#!/usr/bin/env bash
# Prepares, on a machine with a package registry, what benchmarks/gpu_sweeps.sh needs on a GPU
# machine without one (benchmarks/README.md, "Sweeps on a GPU"): the wheels of the packages its
# image lacks, for its Python 3.12 on x86-64, in .whl/ (git-ignored), and a copy of MNIST t10k
# in .gpu-data/mnist-t10k (git-ignored; the ../shared beside a checkout does not travel).
# Prints their sizes: the device tool carries at most 64 MiB with the working tree.
#
#   bash benchmarks/gpu_wheels.sh [MNIST_FOLDER]   # default ../shared/data/mnist-t10k
set -euo pipefail
cd "$(dirname "$0")/.."
mnist=${1:-../shared/data/mnist-t10k}

# The packages a sweep imports that the GPU image (KINDS.md's list) does not have, at the
# versions this project is tested with, and the modules they import there in turn. Found by
# running a sweep with only the image's packages and these (mlflow-skinny: MLflow's client and
# its SQLite store, without the server and UI of the full mlflow wheel).
pure=(optuna==5.1.0 colorlog==6.12.0 alembic==1.20.1 Mako==1.4.3
      hydra-core==1.3.8 omegaconf==2.3.1
      mlflow-skinny==3.17.2 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5
      opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
      opentelemetry-semantic-conventions==0.66b2 sqlparse==0.6.1 cachetools==7.3.3
      fastapi==0.165.0 starlette==1.10.0 importlib_metadata==9.1.0 databricks-sdk==0.167.0
      GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3
      plotly==7.1.0)
compiled=(SQLAlchemy==2.1.9 pydantic_core==2.50.5 cryptography==50.0.2 cffi==2.1.1)

rm -rf .whl && mkdir -p .whl
download=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12
          --implementation cp --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl)
"${download[@]}" "${pure[@]}" "${compiled[@]}"
# omegaconf's parser runtime is published as a source archive only: a pure-Python wheel of it.
python3 -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl

mkdir -p .gpu-data/mnist-t10k
if [ -d "$mnist" ]; then
  cp "$mnist"/t10k-*-ubyte.gz .gpu-data/mnist-t10k/
else
  echo "note: $mnist not found: the GPU run's MNIST sweep will train on synthetic data" >&2
fi
du -ch .whl/*.whl | tail -1 | sed 's/total/wheels (.whl)/'
du -sh .gpu-data | sed 's/\t/ /'
tree=$(git ls-files -co --exclude-standard -z | du -ch --files0-from=- 2>/dev/null | tail -1)
echo "working tree that travels: ${tree%%[[:space:]]*} + the above (64 MiB at most in all)"
