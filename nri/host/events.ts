// NRI lifecycle events: names, subscription bits, the RPC each is delivered with, and which of them
// old plugins (pre-v0.12) only understand as a StateChange (nri-protocol.md §6).
import { Event } from '../../gen/nri.pkg.api.v1alpha1.js';

export { Event };

/** Events 1..14 of v0.12.2; a plugin answering any other bit is refused. */
export const VALID_EVENTS_MASK = 0x3fff;

export function eventBit(event: Event): number {
  return 1 << (event - 1);
}

/** The dedicated Plugin-service method for each event (also its display name). */
export const EVENT_METHOD = {
  [Event.RUN_POD_SANDBOX]: 'RunPodSandbox',
  [Event.STOP_POD_SANDBOX]: 'StopPodSandbox',
  [Event.REMOVE_POD_SANDBOX]: 'RemovePodSandbox',
  [Event.CREATE_CONTAINER]: 'CreateContainer',
  [Event.POST_CREATE_CONTAINER]: 'PostCreateContainer',
  [Event.START_CONTAINER]: 'StartContainer',
  [Event.POST_START_CONTAINER]: 'PostStartContainer',
  [Event.UPDATE_CONTAINER]: 'UpdateContainer',
  [Event.POST_UPDATE_CONTAINER]: 'PostUpdateContainer',
  [Event.STOP_CONTAINER]: 'StopContainer',
  [Event.REMOVE_CONTAINER]: 'RemoveContainer',
  [Event.UPDATE_POD_SANDBOX]: 'UpdatePodSandbox',
  [Event.POST_UPDATE_POD_SANDBOX]: 'PostUpdatePodSandbox',
  [Event.VALIDATE_CONTAINER_ADJUSTMENT]: 'ValidateContainerAdjustment',
} as const;

export type EventMethod = (typeof EVENT_METHOD)[keyof typeof EVENT_METHOD];
/** Events that exist on the wire (everything but UNKNOWN and LAST). */
export type WireEvent = keyof typeof EVENT_METHOD;

/**
 * Notification events a plugin may answer with UNIMPLEMENTED (it predates the dedicated RPCs); those
 * plugins then get them as StateChange. Create/Update/Stop and UpdatePodSandbox never fall back.
 */
export const STATE_CHANGE_FALLBACK: ReadonlySet<Event> = new Set([
  Event.RUN_POD_SANDBOX,
  Event.STOP_POD_SANDBOX,
  Event.REMOVE_POD_SANDBOX,
  Event.POST_CREATE_CONTAINER,
  Event.START_CONTAINER,
  Event.POST_START_CONTAINER,
  Event.POST_UPDATE_CONTAINER,
  Event.REMOVE_CONTAINER,
  Event.POST_UPDATE_POD_SANDBOX,
]);

const ALL_EVENTS = Object.keys(EVENT_METHOD).map(Number) as WireEvent[];

/** The event names a subscription mask covers, in event order. */
export function eventNames(mask: number): string[] {
  return ALL_EVENTS.filter((e) => (mask & eventBit(e)) !== 0).map((e) => EVENT_METHOD[e]);
}

/** The mask for a list of event names (as eventNames returns them); unknown names throw. */
export function eventMask(names: readonly string[]): number {
  let mask = 0;
  for (const name of names) {
    const e = ALL_EVENTS.find((ev) => EVENT_METHOD[ev] === name);
    if (e === undefined) throw new Error(`unknown NRI event "${name}"`);
    mask |= eventBit(e);
  }
  return mask;
}

/**
 * The mask a Configure reply means: 0 subscribes to everything; bits outside the valid range are a
 * protocol error (a plugin built against a newer API must not be trusted with events we never send).
 */
export function effectiveEventMask(events: number): number {
  if (events === 0) return VALID_EVENTS_MASK;
  if ((events & ~VALID_EVENTS_MASK) !== 0 || events < 0) {
    throw new Error(`invalid plugin events 0x${(events >>> 0).toString(16)} (valid: 0x${VALID_EVENTS_MASK.toString(16)})`);
  }
  return events;
}
