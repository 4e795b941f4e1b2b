"""Test rig shared by the test suite, `gopher-updater demo` and the benchmark.

- `chainsim`: a faithful Cosmos LCD simulator over real HTTP on loopback.
- `registry`: a real distribution registry (Debian `docker-registry`) in three auth modes,
  a token server, image-push helpers and a fault proxy.
"""
