// The site both sides of bench/ingest.ts generate: many nodes, so that no node comes near the
// per-node flood guard while the whole site floods the consumer.
import { demoShape, type SiteShape } from '../../firmware-sim/generate-site.ts';

export const benchShape: SiteShape = {
  ...demoShape,
  id: 'bench-ingest',
  airHandlers: 200,
  sensorNodes: 20_000,
  controlGroups: 20,
  racksPerAirHandler: 5,
  opcuaShare: 0,
  modbusBasePort: 0,
};
