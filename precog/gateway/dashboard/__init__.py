"""Static files of the dashboard page (HTML, its script and the vendored uPlot chart library)."""
