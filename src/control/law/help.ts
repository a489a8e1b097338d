// Which of the neighbours' calls for air (`GroupControlState.helpK`) this group answers, as the
// error its fans then control to. Fan power goes with speed³, and a helper's air reaches the
// asker's racks less well than the asker's own (least power: each unit's speed ∝ √ of its
// influence), so air moved from an asker to a helper pays only while the helper runs well under
// the asker. A call is answered in full while this group's demand is `priceGapPct + priceBandPct`
// or more under the asker's, fading to nothing at `priceGapPct` under it (−100: every call in
// full). A unit down next door (`helpDownK`) is answered whatever the price: that air is gone, not
// dear. Pure; no I/O.
import type { ControlTuning } from '../../config/tuning-schema.ts';
import type { GroupControlState } from './group-controller.ts';
import { clamp } from './pi.ts';

/** What this group reads of one neighbour's broadcast process state (`callFrom`: finite numbers). */
export interface NeighbourCall {
  /** > 0. */
  helpK: number;
  /** The neighbour's fan demand, %; absent when its row has none usable (answered in full). */
  demandPct?: number;
  /** The part of `helpK` that is its units down (absent in older rows: all of it may be). */
  helpDownK?: number;
}

/**
 * A neighbour's call from its broadcast process state (any version, any shape): null when it asks
 * for nothing or its row says nothing usable; fields that are not finite numbers are left out.
 */
export function callFrom(state: Partial<GroupControlState> | null | undefined): NeighbourCall | null {
  const k = state?.helpK;
  if (typeof k !== 'number' || !(k > 0) || !Number.isFinite(k)) return null;
  const { demandPct, helpDownK } = state!;
  return {
    helpK: k,
    ...(typeof demandPct === 'number' && Number.isFinite(demandPct) ? { demandPct } : {}),
    ...(typeof helpDownK === 'number' && Number.isFinite(helpDownK) ? { helpDownK } : {}),
  };
}

/** The largest call this group answers, K (0 = none); `ownDemandPct` absent (cold start): in full. */
export function answeredHelpK(
  ownDemandPct: number | undefined,
  calls: readonly NeighbourCall[],
  h: Pick<ControlTuning['help'], 'priceGapPct' | 'priceBandPct'>,
): number {
  let k = 0;
  for (const c of calls) {
    if (
      h.priceGapPct <= -100 ||
      ownDemandPct === undefined ||
      !Number.isFinite(ownDemandPct) ||
      c.demandPct === undefined ||
      c.helpDownK === undefined
    ) {
      k = Math.max(k, c.helpK);
      continue;
    }
    const share = clamp((c.demandPct - ownDemandPct - h.priceGapPct) / Math.max(0.1, h.priceBandPct), 0, 1);
    k = Math.max(k, Math.min(c.helpK, c.helpDownK), c.helpK * share);
  }
  return k;
}
