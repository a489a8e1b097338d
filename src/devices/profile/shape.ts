// Facts about a point's place on the wire that the rules and the codec both need.
import type { ModbusTable, ValueType } from './schema.ts';

/** Registers a value type takes. */
export const REGISTERS: Readonly<Record<ValueType, number>> = {
  bool: 1,
  u16: 1,
  i16: 1,
  u32: 2,
  i32: 2,
  f32: 2,
  u64: 4,
};

/** The span of a point in its table: registers for register tables, one bit for coils and inputs. */
export function pointLength(table: ModbusTable, type: ValueType): number {
  return table === 'coil' || table === 'discrete' ? 1 : REGISTERS[type];
}

/** Whether `version` (dotted numbers) is at least `since`. */
export function firmwareAtLeast(version: string, since: string): boolean {
  const a = version.split('.').map(Number);
  const b = since.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}
