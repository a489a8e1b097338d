// `node scripts/peer-keys.ts --master FILE --cluster PREFIX --out DIR NODE…`: writes each node its
// own peer-channel key file (DIR/NODE.peer-keys, mode 0600): one line per other node with the key
// the two share (src/cache/peer-channel.ts pairKey). The master secret stays on the operator's
// machine; a node holds only its own pairs, so it cannot answer to another node's name. Install
// each file on its node and point cluster.peerKeysFile at it (docs/security.md, "Encrypted links").
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pairKey } from '../src/cache/peer-channel.ts';
import { isNodeName } from '../src/cache/rows.ts';

const { values, positionals } = parseArgs({
  options: { master: { type: 'string' }, cluster: { type: 'string' }, out: { type: 'string' } },
  allowPositionals: true,
});
if (!values.master || !values.cluster || !values.out || positionals.length < 2) {
  process.stderr.write(
    'usage: node scripts/peer-keys.ts --master FILE --cluster PREFIX --out DIR NODE NODE…\n',
  );
  process.exit(2);
}
const bad = positionals.filter((n) => !isNodeName(n));
if (bad.length > 0) {
  process.stderr.write(`not node names: ${bad.join(', ')}\n`);
  process.exit(2);
}
const master = Buffer.from((await readFile(values.master, 'utf8')).trim());
if (master.length < 32) {
  process.stderr.write(
    `the master secret in ${values.master} has ${master.length} bytes; want ≥ 32 (openssl rand -hex 32)\n`,
  );
  process.exit(2);
}
const cluster = values.cluster;
for (const node of positionals) {
  const lines = positionals
    .filter((p) => p !== node)
    .map((p) => `${p} ${pairKey(master, cluster, node, p).toString('hex')}`);
  const file = join(values.out, `${node}.peer-keys`);
  await writeFile(file, `# peer-channel keys of ${node} in ${cluster}\n${lines.join('\n')}\n`, {
    mode: 0o600,
  });
  process.stdout.write(`${file}\n`);
}
