// What the pod controller asks of a pod's shim (backend/containerd/warm-shims.ts starts it): pods have
// no pause container, so the shim containerd would have started for it is started ahead of the first
// container instead.
export interface PodShims {
  /** Whether crisp starts shims ahead (warm); false: containerd starts each with the pod's first task. */
  readonly warmsAhead: boolean;
  /**
   * Start the pod's shim in the background (errors are logged, never thrown). `afterShimExit`: the
   * pod's previous shim is shutting down; wait for it to let go of the group's socket first.
   */
  warm(podId: string, opts?: { afterShimExit?: boolean }): void;
  /** Settles (never rejects) once a warm start running for the pod has finished; at once when none runs. */
  ready(podId: string): Promise<void>;
  /** The pod stopped: its shim exits unless it still serves a container. */
  retire(podId: string): Promise<void>;
  /** The pod is removed: retire, then remove what crisp kept for the pod's shim. */
  forget(podId: string): Promise<void>;
  /** After a crispd restart: keep the shims of ready pods, retire the others, forget unknown pods'. */
  recover(readyPods: ReadonlySet<string>, knownPods: ReadonlySet<string>): Promise<void>;
}
