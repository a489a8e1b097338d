// Two gateway lines to one TCP endpoint (a TCP→RTU converter) would be two queues to one RS-485 bus:
// requests no longer one at a time on it, and a unit address on both lines would keep two epochs —
// a stale leader's write let through on the line whose epoch it still beats. Refused at load, as
// two lines on one serial device are; distinct endpoints still load.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';

const config = (lines: string[]) =>
  [
    'gateway: hall-1',
    'listen: {port: 0}',
    'http: {port: 0}',
    'stateFile: /var/lib/coolctl-gateway/hall-1/epochs.json',
    `lines: [${lines.join(', ')}]`,
    'units: [{id: 1, line: a}, {id: 2, line: b, unitId: 1}]',
  ].join('\n');

describe('gateway lines over TCP', () => {
  it('one endpoint named twice (host case and a trailing dot alike) is refused, naming both lines', () => {
    for (const second of ['CONVERTER.hall', 'converter.hall.']) {
      let err: unknown;
      try {
        parseGatewayConfig(
          config([
            '{name: a, tcp: {host: converter.hall, port: 502}}',
            `{name: b, tcp: {host: ${second}, port: 502}}`,
          ]),
          'gw.yaml',
        );
      } catch (e) {
        err = e;
      }
      expect(err, second).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/\/lines\/1\/tcp: .*:502 is also line a/);
    }
  });

  it('two endpoints load: another port, another host', () => {
    for (const b of ['{host: converter.hall, port: 503}', '{host: converter-2.hall, port: 502}'])
      expect(
        parseGatewayConfig(
          config(['{name: a, tcp: {host: converter.hall, port: 502}}', `{name: b, tcp: ${b}}`]),
        ).lines,
      ).toHaveLength(2);
  });
});
