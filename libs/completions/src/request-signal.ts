/**
 * The exchange's abort signal, made with `new` like any object. Node's AbortController makes
 * each AbortSignal as an EventTarget and then sets its prototype (`setPrototypeOf`): with one
 * per request, a minimal server kept ~0.5 KB per request alive through young-generation
 * collections until the next full one (issue 18, docs/BENCHMARKS.md "Old tables keep young
 * requests"); in the gateway, CPU per request at saturation fell with it and `Slots`.
 * The same interface for what reads it (`aborted`, `reason`, `throwIfAborted`, the `abort`
 * event: undici, the providers, the stream relay); `abort` is its controller's.
 */
export class RequestSignal extends EventTarget {
  aborted = false;
  reason: unknown = undefined;
  onabort: ((this: AbortSignal, ev: Event) => unknown) | null = null;

  abort(reason: unknown = new DOMException('This operation was aborted', 'AbortError')): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const event = new Event('abort');
    this.onabort?.call(this as unknown as AbortSignal, event);
    this.dispatchEvent(event);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  /** Typed as what it stands for. */
  get asSignal(): AbortSignal {
    return this as unknown as AbortSignal;
  }
}
