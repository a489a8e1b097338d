// Gateway settings a careless operator gets wrong, checked at load: a baud rate no RS-485 unit
// speaks (the line would open and every unit only time out), unit addresses outside 1..247, and
// problems that point at the gateway's own docs, every one listed at once.
import { describe, expect, it } from 'vitest';
import { BAUD_RATES } from '../../src/devices/modbus/rtu-frame.ts';
import { ConfigError } from '../../src/errors.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';

const yaml = (baudRate: number, ids: [number, number]) =>
  [
    'gateway: hall-1',
    'listen: {port: 0}',
    'http: {port: 0}',
    'stateFile: /var/lib/coolctl-gateway/hall-1/epochs.json',
    `lines: [{name: rs485, serial: {path: /dev/ttyUSB0, baudRate: ${baudRate}}}]`,
    `units: [{id: ${ids[0]}, line: rs485}, {id: 2, line: rs485, unitId: ${ids[1]}}]`,
  ].join('\n');

function problems(text: string): string {
  const err = (() => {
    try {
      parseGatewayConfig(text, 'gw.yaml');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  expect(err).toBeInstanceOf(ConfigError);
  return (err as Error).message;
}

describe('gateway config rules', () => {
  it('every standard baud rate loads', () => {
    for (const b of BAUD_RATES)
      expect(parseGatewayConfig(yaml(b, [1, 3])).lines[0]!.serial!.baudRate).toBe(b);
  });

  it('a rate no unit speaks, and addresses out of 1..247: every problem at once, listing the rates', () => {
    for (const b of [19_201, 96_000, 12_345]) {
      const m = problems(yaml(b, [0, 248]));
      expect(m).toMatch(/3 problem/);
      expect(m).toMatch(/\/lines\/0\/serial\/baudRate/);
      expect(m).toMatch(/\/units\/0\/id: must be >= 1/);
      expect(m).toMatch(/\/units\/1\/unitId: must be <= 247/);
      expect(m).toMatch(
        /baudRate: must be equal to one of the allowed values \(allowed: 1200, [0-9, ]* or 921600\)/,
      );
      expect(m).not.toMatch(/site-config\.md/);
    }
  });
});
