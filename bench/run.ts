// `npm run bench -- NAME [args]`: runs bench/NAME.ts, prints its figures as a table and writes them
// to bench/results/NAME.json as a flat { metric: number } object (PRODUCT.md interface).
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const name = process.argv[2];
const available = (await readdir(here))
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3));
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- NAME   (one of: ${available.join(', ')})\n`);
  process.exit(2);
}
const mod = (await import(join(here, `${name}.ts`))) as {
  run: (args: string[]) => Promise<Record<string, number>>;
};
const figures = await mod.run(process.argv.slice(3));
const width = Math.max(...Object.keys(figures).map((k) => k.length));
process.stdout.write(`\n${name}\n${'-'.repeat(width + 16)}\n`);
for (const [k, v] of Object.entries(figures))
  process.stdout.write(`${k.padEnd(width)}  ${formatNumber(v)}\n`);
await mkdir(join(here, 'results'), { recursive: true });
const out = join(here, 'results', `${name}.json`);
await writeFile(out, `${JSON.stringify(figures, null, 2)}\n`);
process.stdout.write(`\nwritten to ${out}\n`);
process.exit(0);

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 3 : 1);
}
