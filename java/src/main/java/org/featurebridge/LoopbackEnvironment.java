package org.featurebridge;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PortablePipelineOptions;

/**
 * Makes {@code --defaultEnvironmentType=LOOPBACK} usable with cross-language transforms.
 *
 * <p>Beam Java (2.62) builds the pipeline's default environment when a cross-language transform
 * is expanded, at construction time; for LOOPBACK that environment needs an address, which the
 * PortableRunner only knows when {@code run()} starts its worker service, so expansion fails with
 * "External service address must not be empty". Given {@code --defaultEnvironmentConfig=host:port},
 * the PortableRunner binds its loopback worker service to exactly that address, so a free local
 * port chosen up front satisfies both.
 */
public final class LoopbackEnvironment {
  /** Beam's name of the loopback environment type. */
  public static final String LOOPBACK = "LOOPBACK";

  private LoopbackEnvironment() {}

  /** True when {@code options} ask for LOOPBACK but name no worker address yet. */
  public static boolean needsAddress(PipelineOptions options) {
    PortablePipelineOptions portable = options.as(PortablePipelineOptions.class);
    String config = portable.getDefaultEnvironmentConfig();
    return LOOPBACK.equals(portable.getDefaultEnvironmentType())
        && (config == null || config.isBlank());
  }

  /**
   * With LOOPBACK and no {@code defaultEnvironmentConfig}, sets it to {@code localhost:<a free
   * port>}; otherwise leaves {@code options} alone. Call before applying featurebridge stages.
   *
   * @return {@code options}
   */
  public static PipelineOptions prepare(PipelineOptions options) {
    if (needsAddress(options)) {
      options
          .as(PortablePipelineOptions.class)
          .setDefaultEnvironmentConfig("localhost:" + freePort());
    }
    return options;
  }

  private static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free local port for the loopback worker", e);
    }
  }
}
