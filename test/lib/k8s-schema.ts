// Checks a plain object (a rendered manifest) against @kubernetes/client-node's model metadata
// (attributeTypeMap): every key must be a field of the type, with a value of the field's type, down
// to the leaves. Returns the problems as "path: what" strings (empty = the object fits the type).
import * as k8s from '@kubernetes/client-node';

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}
interface Model {
  getAttributeTypeMap(): Attribute[];
}

const models = k8s as unknown as Record<string, Model | undefined>;

/** Quantities (resources, limits) are strings in the models, but the API also takes plain numbers. */
const QUANTITY_MAPS = new Set(['V1ResourceRequirements.limits', 'V1ResourceRequirements.requests']);

export function checkAgainstModel(value: unknown, type: string, path = '', owner = ''): string[] {
  const problems: string[] = [];
  const bad = (what: string) => problems.push(`${path || '<root>'}: ${what}, got ${JSON.stringify(value)}`);
  if (value === null || value === undefined) return problems;
  const array = /^Array<(.+)>$/.exec(type);
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (array) {
    if (!Array.isArray(value)) bad(`expected a list of ${array[1]}`);
    else value.forEach((v, i) => problems.push(...checkAgainstModel(v, array[1]!, `${path}[${i}]`, owner)));
  } else if (map) {
    if (typeof value !== 'object' || Array.isArray(value)) bad(`expected a map of ${map[1]}`);
    else {
      for (const [k, v] of Object.entries(value)) {
        if (QUANTITY_MAPS.has(owner) && typeof v === 'number') continue;
        problems.push(...checkAgainstModel(v, map[1]!, `${path}.${k}`, owner));
      }
    }
  } else if (type === 'string') {
    if (typeof value !== 'string') bad('expected a string');
  } else if (type === 'number') {
    if (typeof value !== 'number' || !Number.isInteger(value)) bad('expected an integer');
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') bad('expected a boolean');
  } else if (type === 'IntOrString') {
    if (typeof value !== 'string' && !Number.isInteger(value)) bad('expected an integer or a string');
  } else if (type === 'Date') {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) bad('expected a timestamp');
  } else if (type === 'any' || type === 'object') {
    // free-form by definition
  } else {
    const model = models[type];
    if (!model?.getAttributeTypeMap) throw new Error(`${path}: no model ${type} in @kubernetes/client-node`);
    if (typeof value !== 'object' || Array.isArray(value)) return [`${path || '<root>'}: expected a ${type} object, got ${JSON.stringify(value)}`];
    const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a]));
    for (const [k, v] of Object.entries(value)) {
      const attr = attrs.get(k);
      if (!attr) problems.push(`${path ? `${path}.` : ''}${k}: ${type} has no field ${k}`);
      else problems.push(...checkAgainstModel(v, attr.type, path ? `${path}.${k}` : k, `${type}.${k}`));
    }
  }
  return problems;
}

/** The client-node model for a manifest's apiVersion and kind ("apps/v1" DaemonSet → V1DaemonSet). */
export function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop()!;
  return `${version[0]!.toUpperCase()}${version.slice(1)}${kind}`;
}
