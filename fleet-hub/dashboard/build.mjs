// Bundles the dashboard (src/main.js + uPlot) into the hub's DashboardFiles/ with esbuild: one script, one stylesheet,
// index.html. Nothing is fetched at run time from anywhere but the hub itself.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'EdgeMl.FleetHub', 'DashboardFiles');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, 'src', 'main.js') },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'esm',
  target: ['es2022'],
  outdir: out,
  logLevel: 'warning',
  legalComments: 'eof',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
console.log(`dashboard → ${out}`);
