// Moved. The uncompiled example that lived here was replaced by a compiled and tested
// Maven module, java/ (org.featurebridge:featurebridge-java, Beam Java 2.62.0):
//
//   java/src/main/java/org/featurebridge/FeatureBridge.java        the typed API:
//       FeatureBridge.analyzeAndTransform(spec, outputDir) / transform(analyzedDir) /
//       predict(modelDir), each .withExpansionService("host:port") and .withCallStyle(...)
//   java/src/main/java/org/featurebridge/examples/CsvToFeatures.java   an example pipeline
//   java/src/test/java/org/featurebridge/FeatureBridgeEngineIT.java    the engine test
//       (run on Flink and Spark by tests/test_java_engines.py)
//
// See docs/java/README.md for the quick start.
