// Which plugin set which field of which container during one event, so that two plugins touching
// the same field is caught and reported by name (nri-protocol.md §8). Simple fields have one owner;
// compound fields (annotations, mounts, env, …) have one owner per key. A removal records the
// remover as "-<plugin>": only that same plugin may set the entry again afterwards.
import { Field, type OwningPlugins } from '../../gen/nri.pkg.api.v1alpha1.js';
import type { Input } from '../../common/proto-registry.js';

export { Field };

/** Two plugins (or one plugin twice) claimed the same field. */
export class ConflictError extends Error {
  constructor(
    readonly plugin: string,
    readonly other: string,
    readonly field: Field,
    readonly key?: string,
  ) {
    super(`plugins "${plugin}" and "${other}" both tried to set ${Field[field]}${key !== undefined ? ` ${key}` : ''}`);
    this.name = 'ConflictError';
  }
}

/** One claim: a simple field, or a compound field's key. */
export interface Claim {
  field: Field;
  key?: string;
}

interface ContainerOwners {
  simple: Map<Field, string>;
  compound: Map<Field, Map<string, string>>;
}

const REMOVED = '-';

export class Ownership {
  private readonly byContainer = new Map<string, ContainerOwners>();

  private ownersOf(id: string): ContainerOwners {
    let o = this.byContainer.get(id);
    if (!o) {
      o = { simple: new Map(), compound: new Map() };
      this.byContainer.set(id, o);
    }
    return o;
  }

  private current(id: string, claim: Claim): string | undefined {
    const o = this.byContainer.get(id);
    if (!o) return undefined;
    return claim.key === undefined ? o.simple.get(claim.field) : o.compound.get(claim.field)?.get(claim.key);
  }

  private set(id: string, claim: Claim, owner: string): void {
    const o = this.ownersOf(id);
    if (claim.key === undefined) {
      o.simple.set(claim.field, owner);
      return;
    }
    let m = o.compound.get(claim.field);
    if (!m) {
      m = new Map();
      o.compound.set(claim.field, m);
    }
    m.set(claim.key, owner);
  }

  /** The conflict this claim would cause, if any (nothing is recorded). */
  conflict(id: string, claim: Claim, plugin: string): ConflictError | undefined {
    const other = this.current(id, claim);
    if (other === undefined) return undefined;
    if (other.startsWith(REMOVED)) {
      const remover = other.slice(REMOVED.length);
      return remover === plugin ? undefined : new ConflictError(plugin, remover, claim.field, claim.key);
    }
    return new ConflictError(plugin, other, claim.field, claim.key);
  }

  /** Claims every entry or none: throws the first conflict before recording anything. */
  claimAll(id: string, claims: readonly Claim[], plugin: string): void {
    for (const c of claims) {
      const err = this.conflict(id, c, plugin);
      if (err) throw err;
    }
    // The same entry twice in one reply is a conflict with itself.
    const seen = new Set<string>();
    for (const c of claims) {
      const k = `${c.field}\0${c.key ?? ''}`;
      if (seen.has(k)) throw new ConflictError(plugin, plugin, c.field, c.key);
      seen.add(k);
    }
    for (const c of claims) this.set(id, c, plugin);
  }

  claim(id: string, claim: Claim, plugin: string): void {
    this.claimAll(id, [claim], plugin);
  }

  /** Records a removal by `plugin`; removing never conflicts. */
  clear(id: string, claim: Claim, plugin: string): void {
    this.set(id, claim, `${REMOVED}${plugin}`);
  }

  /** Hooks accumulate: every contributing plugin is listed, comma-separated, never a conflict. */
  accumulate(id: string, field: Field, plugin: string): void {
    const prev = this.current(id, { field });
    this.set(id, { field }, prev ? `${prev},${plugin}` : plugin);
  }

  /** The owner of an entry as recorded ("-name" after a removal), for tests and diagnostics. */
  owner(id: string, claim: Claim): string | undefined {
    return this.current(id, claim);
  }

  toProto(): Input<OwningPlugins> {
    const owners: NonNullable<Input<OwningPlugins>['owners']> = {};
    for (const [id, o] of this.byContainer) {
      const simple: Record<string, string> = {};
      for (const [f, p] of o.simple) simple[String(f)] = p;
      const compound: Record<string, { owners: Record<string, string> }> = {};
      for (const [f, m] of o.compound) compound[String(f)] = { owners: Object.fromEntries(m) };
      owners[id] = { simple, compound };
    }
    return { owners };
  }
}
