package org.featurebridge;

import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.apache.beam.model.expansion.v1.ExpansionApi.DiscoverSchemaTransformRequest;
import org.apache.beam.model.expansion.v1.ExpansionApi.DiscoverSchemaTransformResponse;
import org.apache.beam.model.expansion.v1.ExpansionApi.SchemaTransformConfig;
import org.apache.beam.model.expansion.v1.ExpansionServiceGrpc;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ManagedChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ManagedChannelBuilder;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.StatusRuntimeException;

/** Asks an expansion service which SchemaTransforms it offers ({@code DiscoverSchemaTransform}). */
public final class SchemaTransformDiscovery {
  private static final long DEADLINE_SECONDS = 60;

  private SchemaTransformDiscovery() {}

  /**
   * Every SchemaTransform the service at {@code address} offers, by identifier.
   *
   * @param address {@code host:port} of the expansion service (plain-text gRPC)
   * @throws IllegalArgumentException {@code address} is not {@code host:port}
   * @throws IllegalStateException the call failed, or the service reported an error
   */
  public static Map<String, SchemaTransformConfig> discover(String address) {
    Arguments.requireHostPort(address, "expansion service address");
    ManagedChannel channel =
        ManagedChannelBuilder.forTarget(address)
            .usePlaintext()
            .maxInboundMessageSize(64 << 20)
            .build();
    try {
      DiscoverSchemaTransformResponse response =
          ExpansionServiceGrpc.newBlockingStub(channel)
              .withDeadlineAfter(DEADLINE_SECONDS, TimeUnit.SECONDS)
              .discoverSchemaTransform(DiscoverSchemaTransformRequest.getDefaultInstance());
      if (!response.getError().isEmpty()) {
        throw new IllegalStateException(
            "DiscoverSchemaTransform at " + address + " reported: " + response.getError());
      }
      return response.getSchemaTransformConfigsMap();
    } catch (StatusRuntimeException e) {
      throw new IllegalStateException(
          "DiscoverSchemaTransform at " + address + " failed (" + e.getStatus()
              + "); is featurebridge's expansion service listening there?",
          e);
    } finally {
      channel.shutdownNow();
    }
  }

  /**
   * The configuration of one SchemaTransform the service at {@code address} offers.
   *
   * @throws IllegalStateException the service does not offer {@code identifier} (the message lists
   *     what it offers), or discovery failed
   */
  public static SchemaTransformConfig configOf(String address, String identifier) {
    Map<String, SchemaTransformConfig> offered = discover(address);
    SchemaTransformConfig config = offered.get(identifier);
    if (config == null) {
      throw new IllegalStateException(
          "the expansion service at " + address + " does not offer " + identifier
              + "; it offers " + new TreeSet<>(offered.keySet())
              + ". Is it featurebridge's expansion service, of a matching version?");
    }
    return config;
  }
}
