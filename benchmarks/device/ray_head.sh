# Sourced by the device scripts: one Ray cluster for everything a call runs (README "On an existing
# Ray cluster"); separate local clusters would each count the host's GPUs as their own and pack
# their trials onto the first one.
export RAY_AUTH_MODE=token RAY_ADDRESS=127.0.0.1:6380
if ! ray status > /dev/null 2>&1; then
  ray get-auth-token --generate > /dev/null
  ray start --head --port=6380 --include-dashboard=false --disable-usage-stats > /tmp/ray-start.log 2>&1 \
    || { cat /tmp/ray-start.log; exit 1; }
fi
