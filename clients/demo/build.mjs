// Bundles src/main.js into the gateway's static folder, where the Python package ships it.
// `node build.mjs --check` rebuilds in memory and fails when the shipped bundle differs,
// so a change to the demo or the client cannot land without its bundle.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const out = fileURLToPath(new URL('../../services/collab_gateway/static/demo.js', import.meta.url));
const check = process.argv.includes('--check');

const result = await build({
  entryPoints: [fileURLToPath(new URL('./src/main.js', import.meta.url))],
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2020'],
  legalComments: 'none',
  charset: 'utf8',
  write: false,
  logLevel: 'warning',
});
const bundle = result.outputFiles[0].contents;

if (check) {
  const shipped = await readFile(out).catch(() => Buffer.alloc(0));
  if (!Buffer.from(bundle).equals(shipped)) {
    console.error(`${out} is out of date: run \`npm run build\` in clients/demo and commit it`);
    process.exit(1);
  }
  console.log('demo bundle is up to date');
} else {
  await writeFile(out, bundle);
  console.log(`wrote ${out} (${bundle.length} bytes)`);
}
