// Builds a generator workflow into a Reprise component:
//   node build.mjs <workflow.js> <out.wasm> <wit dir>
// esbuild bundles the user's module with the driver (runtime.js) and the
// MessagePack library into one ES module; ComponentizeJS turns it into a
// component of the `workflow` world whose only imports are the host's.
// Exit codes: 0 built; 65 the workflow is at fault (the message on stderr
// names the file and line); anything else, the toolchain is.

import { build } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile, rename } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [input, output, wit] = process.argv.slice(2);
if (!input || !output || !wit) {
  console.error('usage: node build.mjs <workflow.js> <out.wasm> <wit dir>');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.resolve(input);
// A workflow may import the SDK by name (for `WorkflowError`): it is this
// directory's runtime.js, bundled once with the driver.
const alias = { '@reprise/workflow': path.join(here, 'runtime.js') };
// What both esbuild runs share: one ES module, the host's imports left to
// the component, packages from the SDK's own node_modules.
const common = {
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  external: ['reprise:*'],
  alias,
  nodePaths: [path.join(here, '..', 'node_modules')],
  write: false,
  logLevel: 'silent',
};

function userError(message) {
  console.error(message);
  process.exit(65);
}

function located(e, what) {
  const lines = (e.errors || []).map((m) => {
    const at = m.location ? `${path.resolve(m.location.file)}:${m.location.line}:${m.location.column + 1}: ` : '';
    return `${at}${what}: ${m.text}`;
  });
  return lines.length ? lines.join('\n') : `${file}: ${what}: ${e.message}`;
}

// 1. The user's module on its own: syntax errors, and the `workflow` export.
let exports;
try {
  const probe = await build({
    ...common,
    entryPoints: [file],
    metafile: true,
    outfile: 'probe.js',
  });
  exports = Object.values(probe.metafile.outputs)[0].exports;
} catch (e) {
  userError(located(e, 'error'));
}
if (!exports.includes('workflow')) {
  userError(
    `${file}: the module does not export \`workflow\` (found: ${exports.length ? exports.join(', ') : 'no exports'}); ` +
      'write `export function* workflow(input) { ... }` or `export { workflow }`',
  );
}

// 2. The bundle: the user's module, the driver, MessagePack.
const entry = [
  `import { workflow } from ${JSON.stringify(file)};`,
  `import { makeRun } from ${JSON.stringify(path.join(here, 'runtime.js'))};`,
  'export const run = makeRun(workflow);',
].join('\n');
let source;
try {
  const bundle = await build({
    ...common,
    stdin: { contents: entry, resolveDir: path.dirname(file), sourcefile: 'reprise-entry.js', loader: 'js' },
    target: 'es2022',
    legalComments: 'none',
  });
  source = bundle.outputFiles[0].text;
} catch (e) {
  userError(located(e, 'error'));
}

// 3. The component. WASI features stay off: time, randomness and output go
// through the host, which journals them.
let component;
try {
  ({ component } = await componentize(source, {
    witPath: path.resolve(wit),
    worldName: 'workflow',
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
  }));
} catch (e) {
  // ComponentizeJS runs the module's top level while it builds: an error
  // there is the workflow's.
  userError(`${file}: the module failed to initialize: ${e.message || e}`);
}
const tmp = `${output}.tmp-${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, output);
