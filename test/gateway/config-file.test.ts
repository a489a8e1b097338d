// The gateway's config file is read as the controller's are: sized before it is read, UTF-8 only,
// and whatever is wrong with the file itself is a ConfigError naming it (exit 2 from main.ts).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { loadGatewayConfig } from '../../src/gateway/config.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-gw-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusal(file: string): Promise<string> {
  const err = await loadGatewayConfig(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return (err as ConfigError).message;
}

describe('the gateway config file itself', () => {
  it('refuses a file that is not UTF-8, too big, no regular file, or missing — naming it', async () => {
    const latin1 = join(dir, 'latin1.yaml');
    await writeFile(latin1, Buffer.from('gateway: caf\xe9\n', 'latin1'));
    expect(await refusal(latin1)).toMatch(/not UTF-8/);
    const big = join(dir, 'big.yaml');
    await writeFile(big, `# ${'x'.repeat(2 * 1024 * 1024)}\ngateway: g\n`);
    expect(await refusal(big)).toMatch(/big\.yaml is 2\.0 MB, more than the 1\.0 MB/);
    expect(await refusal(dir)).toMatch(/is not a regular file/);
    expect(await refusal(join(dir, 'missing.yaml'))).toMatch(/cannot read file \(ENOENT\)/);
  });
});
