// The `yaml` library, loaded on first use: ~140 modules (~3 MB of heap) that a controller with a
// valid config never needs — the site loader wants it only to place a problem on its line, the CLI
// only to read its own config file. Every module that needs it outside the CLI's file tools takes
// it from here (test/daemon/controller-footprint.test.ts holds that a controller never loads it).
import { createRequire } from 'node:module';

type YamlLib = typeof import('yaml');
let lib: YamlLib | undefined;

export function yamlLib(): YamlLib {
  lib ??= createRequire(import.meta.url)('yaml') as YamlLib;
  return lib;
}
