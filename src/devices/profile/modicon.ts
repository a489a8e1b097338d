// Register numbering: vendors list a point either by its 0-based wire address or by its Modicon
// number (0xxxx coil, 1xxxx discrete input, 3xxxx input register, 4xxxx holding register; 40001 is
// wire address 0; six digits, 400001, for maps past 9999). A Modicon number names its table, so a
// profile whose number and `table` disagree is refused rather than guessed at.
import type { ModbusTable } from './schema.ts';

export const MODICON_PREFIX: Readonly<Record<ModbusTable, number>> = {
  coil: 0,
  discrete: 1,
  input: 3,
  holding: 4,
};

const TABLE_BY_PREFIX = new Map<number, ModbusTable>(
  Object.entries(MODICON_PREFIX).map(([t, p]) => [p, t as ModbusTable]),
);

export type Numbering = 'auto' | 'wire';

export type AddressResult = { wire: number } | { problem: string; allowed: string };

/**
 * The wire address of a profile's `address`. Integers up to 10000 are wire addresses; with
 * numbering `auto` (the default) integers from 10001 are Modicon numbers, with `wire` they are
 * wire addresses too. A string of 5 or 6 digits is always a Modicon number (the only way to write
 * a coil's 0xxxx number, which YAML would read as a plain integer).
 */
export function resolveAddress(
  table: ModbusTable,
  address: number | string,
  numbering: Numbering = 'auto',
): AddressResult {
  if (typeof address === 'number') {
    if (!Number.isInteger(address) || address < 0) {
      return { problem: `address ${address} is not a register number`, allowed: 'an integer ≥ 0' };
    }
    if (numbering === 'wire' || address <= 10_000) {
      if (address > 0xffff) {
        return { problem: `wire address ${address} is past 65535`, allowed: '0–65535' };
      }
      return { wire: address };
    }
    return fromModicon(table, String(address), address);
  }
  return fromModicon(table, address, address);
}

function fromModicon(table: ModbusTable, digits: string, shown: number | string): AddressResult {
  const prefix = Number(digits[0]);
  const n = Number(digits.slice(1));
  const owner = TABLE_BY_PREFIX.get(prefix);
  const expected = `${MODICON_PREFIX[table]}${'x'.repeat(digits.length - 1)}`;
  if ((digits.length !== 5 && digits.length !== 6) || owner === undefined) {
    return {
      problem: `${JSON.stringify(shown)} is not a Modicon number (first digit 0, 1, 3 or 4, then 4 or 5 digits)`,
      allowed: `a Modicon ${expected} number, a wire address up to 10000, or modbus.numbering: wire`,
    };
  }
  if (owner !== table) {
    return {
      problem: `${JSON.stringify(shown)} is a Modicon ${owner} number but the point's table is ${table}`,
      allowed: `a ${expected} number for a ${table} point, or table: ${owner}`,
    };
  }
  const max = digits.length === 5 ? 9999 : 65_536;
  if (n < 1 || n > max) {
    return {
      problem: `${JSON.stringify(shown)} is outside the Modicon ${table} range`,
      allowed: `${prefix}${'0'.repeat(digits.length - 2)}1–${prefix}${max}`,
    };
  }
  return { wire: n - 1 };
}

/** The Modicon number of a wire address, as vendors print it (5 digits while it fits). */
export function toModicon(table: ModbusTable, wire: number): string {
  const n = wire + 1;
  const width = n <= 9999 ? 4 : 5;
  return `${MODICON_PREFIX[table]}${String(n).padStart(width, '0')}`;
}
