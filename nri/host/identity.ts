// Plugin identity rules (nri-protocol.md §9): an index of exactly two ASCII digits, a name of
// [A-Za-z0-9._+-], and the "NN-name" form used for pre-installed files, logs and conflict messages.

export interface PluginIdentity {
  name: string;
  index: string;
}

const NAME_RE = /^[A-Za-z0-9._+-]+$/;
const INDEX_RE = /^[0-9]{2}$/;

/** Why `index` is not a valid plugin index, or undefined when it is. */
export function checkPluginIndex(index: string): string | undefined {
  return INDEX_RE.test(index) ? undefined : `invalid plugin index "${index}": must be exactly two digits`;
}

/** Why `name` is not a valid plugin name, or undefined when it is. */
export function checkPluginName(name: string): string | undefined {
  if (name === '') return 'empty plugin name';
  return NAME_RE.test(name) ? undefined : `invalid plugin name "${name}": only [A-Za-z0-9._+-] are allowed`;
}

/** Splits "NN-name" at the first "-"; throws with the reason when it is not a valid identity. */
export function parseQualifiedName(qualified: string): PluginIdentity {
  const dash = qualified.indexOf('-');
  if (dash < 0) throw new Error(`"${qualified}" is not of the form NN-name`);
  const id = { index: qualified.slice(0, dash), name: qualified.slice(dash + 1) };
  const why = checkPluginIndex(id.index) ?? checkPluginName(id.name);
  if (why) throw new Error(`"${qualified}" is not of the form NN-name: ${why}`);
  return id;
}

export function qualifiedName(id: PluginIdentity): string {
  return `${id.index}-${id.name}`;
}

/** Whether a configured plugin reference ("name" or "NN-name") designates this identity. */
export function matchesPlugin(ref: string, id: PluginIdentity): boolean {
  return ref === id.name || ref === qualifiedName(id);
}

/** Plugins run in ascending index order; the name only makes equal indexes deterministic. */
export function comparePlugins(a: PluginIdentity, b: PluginIdentity): number {
  if (a.index !== b.index) return a.index < b.index ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
