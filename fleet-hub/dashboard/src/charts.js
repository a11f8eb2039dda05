// Time-series charts with uPlot (small, fast, canvas): one chart per measure, drawn from the device's health history.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { h } from './ui.js';

const palette = ['#2563eb', '#dc2626', '#059669', '#d97706'];

/**
 * A chart: `times` in seconds since the epoch, `series` [{label, values, min?, max?}] of the same length (null: no
 * value). With min and max (the hub's downsampled buckets) each line gets a band of its own colour from min to max.
 * The element keeps the values it was drawn from in data-* attributes (count, last value) for people and tests; the
 * uPlot instance (`.plot`) has the lines first: data[1] is the first series' values.
 */
export function chart(title, unit, times, series, testid) {
  const box = h('figure.chart', { 'data-testid': testid, 'data-points': times.length });
  const last = series[0]?.values.findLast((v) => v !== null && v !== undefined);
  box.dataset.last = last === undefined ? '' : String(last);
  const names = series.length > 1 ? series.map((s, i) => h('span', { style: `color:${palette[i % palette.length]}` }, ` ${s.label}`)) : null;
  box.append(h('figcaption', `${title}${unit ? ` (${unit})` : ''}`, names));
  if (times.length === 0) {
    box.append(h('p.muted', 'no health reports in this range'));
    return box;
  }
  const lines = series.map((s, i) => ({ label: s.label, stroke: palette[i % palette.length], width: 1.5, spanGaps: false }));
  const data = [times, ...series.map((s) => s.values)];
  const bands = [];
  series.forEach((s, i) => {
    if (!s.min || !s.max) return;
    const edge = (label, values) => {
      lines.push({ label, stroke: 'transparent', width: 0, points: { show: false }, spanGaps: false });
      data.push(values);
      return data.length - 1;
    };
    const hi = edge(`${s.label} max`, s.max);
    const lo = edge(`${s.label} min`, s.min);
    bands.push({ series: [hi, lo], fill: `${palette[i % palette.length]}30` });
  });
  const opts = {
    width: 300,
    height: 160,
    legend: { show: false },
    scales: { x: { time: true } },
    axes: [{}, { size: 48 }],
    series: [{}, ...lines],
    bands,
  };
  // uPlot draws into the element; it must be in the document to measure, so it is created on the next frame.
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    opts.width = Math.max(200, box.clientWidth - 16); // the card's width: charts follow the grid, down to a phone's
    const plot = new uPlot(opts, data, box);
    box.dataset.drawn = 'true';
    performance.mark(`edgeml:drawn:${testid}`);
    box.plot = plot;
  });
  return box;
}
