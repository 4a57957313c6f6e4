// OCI image-spec and Docker schema2 types and media types, as they travel over the distribution API.
// Only the fields a puller reads are typed; unknown fields are kept by the JSON bytes, never by these types.

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerManifestSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** What a resolve asks for: every manifest kind a puller can handle (no schema1). */
export const MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest];

export const isIndexMediaType = (mt: string): boolean => mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
export const isManifestMediaType = (mt: string): boolean => mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
export const isSchema1MediaType = (mt: string): boolean =>
  mt === MediaType.dockerManifestSchema1 || mt === MediaType.dockerManifestSchema1Signed;

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** How a layer blob is compressed, from its media type; undefined for a type that is not a layer we can unpack. */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  switch (mediaType) {
    case MediaType.ociLayer:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar':
      return 'none';
    case MediaType.ociLayerGzip:
    case MediaType.ociLayerNondistributableGzip:
    case MediaType.dockerLayerGzip:
    case MediaType.dockerLayerForeignGzip:
      return 'gzip';
    case MediaType.ociLayerZstd:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd':
      return 'zstd';
    default:
      return undefined;
  }
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfigDetails {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  config?: ImageConfigDetails;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
}
