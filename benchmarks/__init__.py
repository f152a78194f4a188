"""Side-by-side timings of the project against its anchors; see docs/PERFORMANCE.md."""
