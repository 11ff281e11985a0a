package recon.minicluster;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.SafeModeAction;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

/**
 * A real HDFS (a NameNode and N DataNodes) and, optionally, a real YARN (a ResourceManager and one
 * NodeManager whose default filesystem is that HDFS), all on 127.0.0.1 with ports the system picks.
 *
 * <pre>
 *   java -cp ... recon.minicluster.Launcher --base DIR --conf-dir DIR [--datanodes 2] [--yarn]
 * </pre>
 *
 * When both are up it writes core-site.xml, hdfs-site.xml and yarn-site.xml into --conf-dir (a
 * HADOOP_CONF_DIR for Spark and for the Python client) and prints one line {@code ready {json}}. It then
 * reads commands from standard input, one per line, and answers each with one line, {@code ok ...} or
 * {@code error ...}: the faults the tests cause on purpose, done as the cluster's administrator would.
 *
 * <pre>
 *   stop-datanode I | restart-datanode I     a DataNode dies (its blocks live on the other replica) / comes back
 *   safemode enter|leave                      the NameNode refuses writes / accepts them again
 *   space-quota PATH BYTES|none               hdfs dfsadmin -setSpaceQuota / -clrSpaceQuota
 *   mkdir PATH OWNER MODE                     hdfs dfs -mkdir -p, -chown, -chmod (MODE octal)
 *   chmod PATH MODE | chown PATH OWNER        hdfs dfs -chmod / -chown
 *   shutdown                                  stop everything and exit 0 (end of input does the same)
 * </pre>
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = parse(args);
        File base = new File(require(opts, "--base"));
        File confDir = new File(require(opts, "--conf-dir"));
        int datanodes = Integer.parseInt(opts.getOrDefault("--datanodes", "2"));
        boolean yarn = opts.containsKey("--yarn");

        // Hadoop's own logs go to stderr (the harness sends them to a file); stdout is the command channel.
        PrintStream out = new PrintStream(new FileOutputStream(java.io.FileDescriptor.out), true, "UTF-8");
        System.setOut(System.err);

        // MiniYARNCluster puts its folders under test.build.data (default: ./target/test/data)
        System.setProperty("test.build.data", new File(base, "yarn").getAbsolutePath());
        Configuration conf = new Configuration();
        conf.set("hadoop.tmp.dir", new File(base, "tmp").getAbsolutePath());
        conf.setInt("dfs.replication", Math.min(2, datanodes));
        conf.setBoolean("dfs.permissions.enabled", true);
        conf.setInt("dfs.namenode.safemode.extension", 0);
        // a stopped DataNode is declared dead in seconds, not the default ten minutes
        conf.setInt("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 2000);
        // two DataNodes: a write pipeline that loses one goes on with the other instead of asking for a third
        conf.set("dfs.client.block.write.replace-datanode-on-failure.policy", "NEVER");
        conf.set("dfs.namenode.rpc-address", "127.0.0.1:0");
        conf.set("dfs.namenode.http-address", "127.0.0.1:0");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");

        MiniDFSCluster dfs = new MiniDFSCluster.Builder(conf, new File(base, "dfs"))
                .numDataNodes(datanodes)
                .nameNodePort(0)
                .checkDataNodeAddrConfig(true)
                .build();
        dfs.waitActive();
        DistributedFileSystem fs = dfs.getFileSystem();
        String fsUri = "hdfs://127.0.0.1:" + dfs.getNameNodePort();
        fs.setPermission(new Path("/"), new FsPermission((short) 0755));
        fs.mkdirs(new Path("/tmp"));
        fs.setPermission(new Path("/tmp"), new FsPermission((short) 01777));
        fs.mkdirs(new Path("/user"));
        fs.setPermission(new Path("/user"), new FsPermission((short) 0777));

        Configuration clientConf = new Configuration(false);
        clientConf.set("fs.defaultFS", fsUri);
        clientConf.set("dfs.replication", String.valueOf(Math.min(2, datanodes)));
        clientConf.set("dfs.client.block.write.replace-datanode-on-failure.policy", "NEVER");
        writeConf(clientConf, new File(confDir, "core-site.xml"), "fs.defaultFS");
        writeConf(clientConf, new File(confDir, "hdfs-site.xml"), "dfs.");

        MiniYARNCluster yarnCluster = null;
        String rm = "";
        if (yarn) {
            YarnConfiguration yconf = new YarnConfiguration(conf);
            yconf.set("fs.defaultFS", fsUri);
            yconf.set(YarnConfiguration.RM_HOSTNAME, "127.0.0.1");
            yconf.set(YarnConfiguration.NM_ADDRESS, "127.0.0.1:0");
            yconf.set(YarnConfiguration.NM_LOCALIZER_ADDRESS, "127.0.0.1:0");
            yconf.set(YarnConfiguration.NM_WEBAPP_ADDRESS, "127.0.0.1:0");
            yconf.setInt(YarnConfiguration.NM_PMEM_MB, Integer.parseInt(opts.getOrDefault("--nm-memory-mb", "6144")));
            yconf.setInt(YarnConfiguration.NM_VCORES, 4);
            yconf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
            yconf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB, 4096);
            yconf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
            yconf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
            // this disk is shared with the tests: do not mark it bad when it fills past 90%
            yconf.setFloat(YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 99.9f);
            yconf.set(YarnConfiguration.NM_ENV_WHITELIST,
                    "JAVA_HOME,HADOOP_COMMON_HOME,HADOOP_HDFS_HOME,HADOOP_CONF_DIR,HADOOP_YARN_HOME,PATH,LANG,TZ");
            yconf.setInt(YarnConfiguration.DEBUG_NM_DELETE_DELAY_SEC, 600);
            // the CapacityScheduler's queues (a real cluster has them in capacity-scheduler.xml): the nightly job
            // is submitted to "recon", as the README tells production to
            yconf.set("yarn.scheduler.capacity.root.queues", "default,recon");
            for (String q : List.of("default", "recon")) {
                yconf.set("yarn.scheduler.capacity.root." + q + ".capacity", "50");
                yconf.set("yarn.scheduler.capacity.root." + q + ".maximum-capacity", "100");
            }
            yconf.set("yarn.scheduler.capacity.maximum-am-resource-percent", "0.5");
            yarnCluster = new MiniYARNCluster("recon", 1, 1, 1);
            yarnCluster.init(yconf);
            yarnCluster.start();
            if (!yarnCluster.waitForNodeManagersToConnect(60_000)) {
                throw new IllegalStateException("the NodeManager did not register with the ResourceManager in 60 s");
            }
            Configuration live = yarnCluster.getConfig();
            Configuration yarnSite = new Configuration(false);
            for (String key : List.of(YarnConfiguration.RM_ADDRESS, YarnConfiguration.RM_SCHEDULER_ADDRESS,
                    YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, YarnConfiguration.RM_ADMIN_ADDRESS,
                    YarnConfiguration.RM_WEBAPP_ADDRESS)) {
                yarnSite.set(key, live.get(key));
            }
            yarnSite.set(YarnConfiguration.RM_HOSTNAME, "127.0.0.1");
            rm = live.get(YarnConfiguration.RM_ADDRESS);
            writeConf(yarnSite, new File(confDir, "yarn-site.xml"), "yarn.");
        }

        out.println("ready {\"fs\": \"" + fsUri + "\", \"namenode_http\": \"" + conf.get("dfs.namenode.http-address")
                + "\", \"resourcemanager\": \"" + rm + "\", \"datanodes\": " + datanodes + "}");

        List<MiniDFSCluster.DataNodeProperties> stopped = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int i = 0; i < datanodes; i++) {
            stopped.add(null);
            names.add(dfs.getDataNodes().get(i).getDatanodeId().getXferAddr());
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        try {
            while ((line = in.readLine()) != null) {
                String[] w = line.trim().split("\\s+");
                if (w.length == 0 || w[0].isEmpty()) continue;
                try {
                    switch (w[0]) {
                        case "stop-datanode": {
                            int i = Integer.parseInt(w[1]);
                            if (stopped.get(i) == null) {
                                // by its address: the cluster's own list reorders as DataNodes stop and restart
                                stopped.set(i, dfs.stopDataNode(names.get(i)));
                            }
                            out.println("ok");
                            break;
                        }
                        case "restart-datanode": {
                            int i = Integer.parseInt(w[1]);
                            if (stopped.get(i) != null) {
                                dfs.restartDataNode(stopped.get(i), true);
                                stopped.set(i, null);
                                dfs.waitActive();
                            }
                            out.println("ok");
                            break;
                        }
                        case "safemode":
                            fs.setSafeMode("enter".equals(w[1]) ? SafeModeAction.ENTER : SafeModeAction.LEAVE);
                            out.println("ok");
                            break;
                        case "space-quota":
                            fs.setQuota(new Path(w[1]), HdfsConstants.QUOTA_DONT_SET,
                                    "none".equals(w[2]) ? HdfsConstants.QUOTA_RESET : Long.parseLong(w[2]));
                            out.println("ok");
                            break;
                        case "mkdir":
                            fs.mkdirs(new Path(w[1]));
                            fs.setOwner(new Path(w[1]), w[2], null);
                            fs.setPermission(new Path(w[1]), new FsPermission((short) Integer.parseInt(w[3], 8)));
                            out.println("ok");
                            break;
                        case "chmod":
                            fs.setPermission(new Path(w[1]), new FsPermission((short) Integer.parseInt(w[2], 8)));
                            out.println("ok");
                            break;
                        case "chown":
                            fs.setOwner(new Path(w[1]), w[2], null);
                            out.println("ok");
                            break;
                        case "shutdown":
                            return;
                        default:
                            out.println("error unknown command " + w[0]);
                    }
                } catch (Exception e) {
                    out.println("error " + e.toString().replace('\n', ' '));
                }
            }
        } finally {
            if (yarnCluster != null) yarnCluster.stop();
            dfs.shutdown();
            out.println("stopped");
        }
    }

    /** Write the keys of {@code conf} that start with {@code prefix} as a Hadoop *-site.xml, atomically. */
    private static void writeConf(Configuration conf, File target, String prefix) throws Exception {
        Configuration subset = new Configuration(false);
        for (Map.Entry<String, String> e : conf) {
            if (e.getKey().startsWith(prefix)) subset.set(e.getKey(), e.getValue());
        }
        target.getParentFile().mkdirs();
        File partial = new File(target.getPath() + ".part");
        try (OutputStream os = new FileOutputStream(partial)) {
            subset.writeXml(os);
        }
        Files.move(partial.toPath(), target.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--")) throw new IllegalArgumentException("unexpected argument " + args[i]);
            boolean flag = i + 1 >= args.length || args[i + 1].startsWith("--");
            opts.put(args[i], flag ? "" : args[++i]);
        }
        return opts;
    }

    private static String require(Map<String, String> opts, String key) {
        String v = opts.get(key);
        if (v == null || v.isEmpty()) throw new IllegalArgumentException(key + " is required");
        return v;
    }
}
