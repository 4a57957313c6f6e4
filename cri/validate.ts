// Small validators for CRI request fields; errors name the field.
import { isIP } from 'node:net';
import { invalidArgument } from '../common/errors.js';

export function isCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || addr === undefined || bits === undefined || !/^\d{1,3}$/.test(bits)) return false;
  const family = isIP(addr);
  const n = Number(bits);
  return (family === 4 && n <= 32) || (family === 6 && n <= 128);
}

export function requireString(value: string | undefined | null, field: string): string {
  if (!value) throw invalidArgument(`${field} is required`);
  return value;
}

export function requireMessage<T>(value: T | undefined | null, field: string): T {
  if (value === undefined || value === null) throw invalidArgument(`${field} is required`);
  return value;
}
