// The dashboard's charts, drawn by Chart.js (vendored from npm, loaded as a classic script before
// the modules). A chart is drawn anew with each refresh of its figures.

const charts = new Map();

export function draw(canvasId, type, labels, datasets, options = {}) {
  charts.get(canvasId)?.destroy();
  const canvas = document.getElementById(canvasId);
  const chart = new window.Chart(canvas, {
    type,
    data: { labels, datasets },
    options: { animation: false, maintainAspectRatio: false, ...options },
  });
  charts.set(canvasId, chart);
}
