// What a value a unit sent means as a quantity: only a scalar of a numeric or Boolean built-in type
// counts. `Number()` would turn an empty Variant, "" or an empty array into 0, "21.5" or [21] into
// a reading and a DateTime into 1.7e12 — a broken or hostile unit's data shown as a plausible
// figure and handed to the control law. Anything else is "no value" here, and the caller says so.
import { DataType, type Variant, VariantArrayType } from 'node-opcua-client';

const NUMERIC: ReadonlySet<DataType> = new Set([
  DataType.SByte,
  DataType.Byte,
  DataType.Int16,
  DataType.UInt16,
  DataType.Int32,
  DataType.UInt32,
  DataType.Float,
  DataType.Double,
]);

/** The Variant as a number or Boolean if it is a scalar of such a type (NaN stays NaN); else undefined. */
export function variantScalar(v: Variant | undefined): number | boolean | undefined {
  if (!v || v.arrayType !== VariantArrayType.Scalar) return undefined;
  if (v.dataType === DataType.Boolean) return typeof v.value === 'boolean' ? v.value : undefined;
  if (NUMERIC.has(v.dataType)) return typeof v.value === 'number' ? v.value : undefined;
  if (v.dataType === DataType.Int64 || v.dataType === DataType.UInt64) {
    // node-opcua carries 64-bit integers as [high, low] words; beyond 2^53 they have no exact number.
    const hl = v.value as unknown;
    if (!Array.isArray(hl) || hl.length !== 2 || !hl.every((w) => typeof w === 'number')) return undefined;
    const [high, low] = hl as [number, number];
    const n = (v.dataType === DataType.Int64 ? high | 0 : high >>> 0) * 2 ** 32 + (low >>> 0);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

/** The Variant as a number (numeric scalar types only: a Boolean is not a quantity); else undefined. */
export function variantNumber(v: Variant | undefined): number | undefined {
  const x = variantScalar(v);
  return typeof x === 'number' ? x : undefined;
}

/** What the unit sent, for an error message: its type and shape, never its (possibly huge) content. */
export function variantShape(v: Variant | undefined): string {
  if (!v) return 'nothing';
  const type = DataType[v.dataType] ?? `DataType ${v.dataType}`;
  if (v.arrayType !== VariantArrayType.Scalar) {
    const n = (v.value as { length?: number } | null)?.length;
    return `${type} array${typeof n === 'number' ? ` of ${n}` : ''}`;
  }
  if (v.dataType === DataType.Null) return 'no value (Null)';
  if (typeof v.value === 'number') return `${type} ${v.value}`;
  return type;
}
