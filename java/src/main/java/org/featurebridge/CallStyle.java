package org.featurebridge;

/**
 * How a {@link FeatureBridgeTransform} reaches the expansion service. Both reach the same
 * allowlisted stage, with the same validation and the same outputs.
 */
public enum CallStyle {
  /**
   * By SchemaTransform identifier (URN {@code beam:expansion:payload:schematransform:v1}): the
   * configuration schema is fetched with the {@code DiscoverSchemaTransform} RPC and the
   * configuration Row is encoded with it. The default.
   */
  SCHEMA_TRANSFORM,
  /**
   * By Python class name through Beam's {@code PythonExternalTransform} (URN {@code
   * beam:transforms:python:fully_qualified_named}), the configuration passed as keyword arguments.
   */
  PYTHON_CLASS
}
