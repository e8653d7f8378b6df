package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
	"github.com/herdcm/herd/testkit"
)

// clusterSite is the site of TestThreeServersOneStore: every node's
// /etc/motd says greeting, and a rollout releases it to the canaries,
// which bake long enough for the test to kill the leader while they do,
// then to the rest.
func clusterSite(greeting, canary1, canary2 string) map[string]string {
	return map[string]string{
		"herd.toml":        fmt.Sprintf("[[rollout.stage]]\nname = \"canary\"\nnodes = [%q, %q]\nbake = \"8s\"\n\n[[rollout.stage]]\nname = \"fleet\"\n", canary1, canary2),
		"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml":     "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .params.greeting }} {{ .node }}\\n\"\n",
		"data/common.toml": fmt.Sprintf("greeting = %q\n", greeting),
	}
}

// TestThreeServersOneStore is issue 15 end to end: three herd server
// processes on one PostgreSQL schema and one CA, six real agent daemons
// each given all three addresses (two start on each server). A commit
// reaches every node through one rollout; the server that leads the
// rollouts is killed (SIGKILL) while the canaries bake: its agents move
// to the others within 30 s, another server takes the rollout to done
// (asking the canaries for their final runs on whichever server they
// watch), every node converges, and every run in every agent's history is
// stored exactly once. A node revoked through one server is refused by
// the other.
func TestThreeServersOneStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	bin := buildHerd(t)

	// Three servers, the CA the first made copied into the others' dirs
	// before they start.
	var servers []*serverProc
	for i := range 3 {
		site, dir := t.TempDir(), t.TempDir()
		testkit.WriteFiles(t, site, clusterSite("hello", "node-1", "node-2"))
		if i > 0 {
			if err := os.CopyFS(filepath.Join(dir, "ca"), os.DirFS(filepath.Join(servers[0].dir, "ca"))); err != nil {
				t.Fatal(err)
			}
		}
		servers = append(servers, startServerProc(t, bin, i, site, dir, dsn))
	}
	byAddr := map[string]*serverProc{}
	for _, s := range servers {
		byAddr[s.addr] = s
	}
	caFile := filepath.Join(servers[0].dir, "ca", "ca.crt")
	admins := make([]herdv1.AdminClient, len(servers))
	adminCert := issueAdmin(t, servers[0].dir)
	for i, s := range servers {
		admins[i] = herdv1.NewAdminClient(dialAs(t, s.addr, adminCert, caFile, "localhost"))
	}
	st, err := store.Open(dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// Six agents, enrolled with one join token; agent i lists the servers
	// from server i%3 on, so that two start on each.
	tok, err := admins[0].CreateJoinToken(ctx, &herdv1.CreateJoinTokenRequest{NamePattern: "node-*", TtlMs: time.Hour.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	var agents []*clusterAgent
	for i := range 6 {
		var addrs []string
		for j := range servers {
			addrs = append(addrs, servers[(i+j)%3].addr)
		}
		agents = append(agents, newClusterAgent(t, fmt.Sprintf("node-%d", i+1), addrs))
	}
	started := make(chan error, len(agents))
	for _, a := range agents {
		go func() { started <- a.start(t, caFile, tok.Token) }()
	}
	for range agents {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range agents {
		awaitFile(t, filepath.Join(a.root, "etc/motd"), "hello "+a.name, 60*time.Second)
		if first := a.connectedTo(); len(first) == 0 || first[0] != a.addrs[0] {
			t.Fatalf("%s connected to %v first, want %s", a.name, first, a.addrs[0])
		}
	}
	before := rolloutIDs(t, admins[0])

	// The commit, to every server's copy of the site. Its canaries are
	// two nodes: one whose agent started on the leader of the rollouts
	// (after the kill it moves to the leader's next server), and one on
	// the server after that. Whichever of the two takes over the
	// rollouts, a canary watches on the other: its report reaches the
	// leader, and the leader's word reaches it, through the store's
	// notifications.
	var lead string
	awaitCond(t, 30*time.Second, "a leader of the rollouts", func() (bool, string) {
		h, ok, err := st.LeaseHolder(ctx, "rollout")
		lead = h
		return ok && byAddr[h] != nil, fmt.Sprintf("%q %v %v", h, ok, err)
	})
	onLead := slices.IndexFunc(agents, func(a *clusterAgent) bool { return a.addrs[0] == lead })
	onOther := slices.IndexFunc(agents, func(a *clusterAgent) bool { return a.addrs[0] == agents[onLead].addrs[2] })
	for _, s := range servers {
		testkit.WriteFiles(t, s.site, clusterSite("good morning", agents[onLead].name, agents[onOther].name))
	}
	var id int64
	awaitCond(t, 60*time.Second, "a new rollout whose canary bakes", func() (bool, string) {
		resp, err := admins[0].ListRollouts(ctx, &herdv1.ListRolloutsRequest{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, r := range resp.Rollouts {
			if before[r.Id] {
				continue
			}
			seen = append(seen, fmt.Sprintf("%d %s %v", r.Id, r.State, stageStatesOf(r)))
			if len(r.Stages) > 0 && r.Stages[0].State == "baking" {
				id = r.Id
				return true, ""
			}
		}
		return false, strings.Join(seen, "; ")
	})

	// Kill the leader of the rollouts while the canary bakes.
	holder, ok, err := st.LeaseHolder(ctx, "rollout")
	if err != nil || !ok || byAddr[holder] == nil {
		t.Fatalf("LeaseHolder(rollout) = %q, %v, %v; want one of the servers", holder, ok, err)
	}
	if holder != lead {
		t.Fatalf("the rollout lease moved from %s to %s without a failure", lead, holder)
	}
	dead := byAddr[holder]
	killed := time.Now()
	dead.kill(t)
	t.Logf("killed server %d (%s), which led the rollouts, while rollout %d's canary baked", dead.i, dead.addr, id)
	var live []herdv1.AdminClient
	for i, s := range servers {
		if s != dead {
			live = append(live, admins[i])
		}
	}

	// Its agents move to another server within 30 s: their Watch streams
	// broke, and the next connection is to the next address.
	for _, a := range agents {
		if a.addrs[0] != dead.addr {
			continue
		}
		awaitCond(t, 30*time.Second, a.name+" connecting to another server", func() (bool, string) {
			got := a.connectedTo()
			return len(got) > 1 && got[len(got)-1] != dead.addr, fmt.Sprintf("connected to %v", got)
		})
		t.Logf("%s moved to %s within %s of the kill", a.name, a.connectedTo()[len(a.connectedTo())-1], time.Since(killed).Round(time.Millisecond))
	}

	// Another server takes the rollout to done: it released the rest
	// after the kill. The bound allows for a loaded machine: a moved
	// agent's first check-in on its new server may wait up to 5 s for
	// the leader's compile of its facts, once for the canaries' final
	// runs and once for the rest.
	awaitCond(t, 60*time.Second, "the rollout done under a new leader", func() (bool, string) {
		resp, err := live[0].GetRollout(ctx, &herdv1.GetRolloutRequest{Id: id})
		if err != nil {
			return false, err.Error()
		}
		r := resp.Rollout
		return r.State == "done", fmt.Sprintf("%s %v %s", r.State, stageStatesOf(r), r.Reason)
	})
	t.Logf("rollout %d done %s after the kill", id, time.Since(killed).Round(time.Millisecond))
	resp, err := live[1].GetRollout(ctx, &herdv1.GetRolloutRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Rollout.Stages); n != 2 || resp.Rollout.Stages[1].StartedUnixMs < killed.UnixMilli() {
		t.Errorf("stages %v: want canary and fleet, fleet started after the kill (%d)", resp.Rollout.Stages, killed.UnixMilli())
	}
	if h, ok, err := st.LeaseHolder(ctx, "rollout"); err != nil || !ok || h == dead.addr || byAddr[h] == nil {
		t.Errorf("after the kill LeaseHolder(rollout) = %q, %v, %v; want a live server", h, ok, err)
	}
	for _, a := range agents {
		awaitFile(t, filepath.Join(a.root, "etc/motd"), "good morning "+a.name, 60*time.Second)
	}
	after := rolloutIDs(t, live[0])
	var fresh []int64
	for r := range after {
		if !before[r] {
			fresh = append(fresh, r)
		}
	}
	if !slices.Equal(fresh, []int64{id}) {
		t.Errorf("rollouts recorded for the commit: %v, want only %d", fresh, id)
	}

	// No report lost or stored twice: every run in every agent's history
	// is in the store once, and nothing else is.
	for _, a := range agents {
		awaitCond(t, 60*time.Second, a.name+"'s reports stored once each", func() (bool, string) {
			runs := a.runIDs(t)
			stored := map[string]int{}
			token := ""
			for {
				resp, err := live[0].ListReports(ctx, &herdv1.ListReportsRequest{Node: a.name, PageToken: token})
				if err != nil {
					return false, err.Error()
				}
				for _, r := range resp.Reports {
					stored[r.Report.RunId]++
				}
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			var missing, twice []string
			for _, run := range runs {
				if stored[run] == 0 {
					missing = append(missing, run)
				}
			}
			for run, n := range stored {
				if n != 1 {
					twice = append(twice, fmt.Sprintf("%s×%d", run, n))
				}
			}
			return len(missing) == 0 && len(twice) == 0 && len(stored) == len(runs),
				fmt.Sprintf("%d runs, %d stored, missing %v, more than once %v", len(runs), len(stored), missing, twice)
		})
	}

	// Revoked through one live server, refused by both.
	victim := agents[len(agents)-1]
	cert, err := tls.LoadX509KeyPair(filepath.Join(victim.certDir, "cert.pem"), filepath.Join(victim.certDir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []herdv1.NodeClient
	for _, s := range servers {
		if s != dead {
			nodes = append(nodes, herdv1.NewNodeClient(dialAs(t, s.addr, cert, caFile, "127.0.0.1")))
		}
	}
	for i, nc := range nodes {
		// Known before: whatever it answers, not a refusal of the node.
		if _, err := nc.Checkin(ctx, &herdv1.CheckinRequest{}); status.Code(err) == codes.Unauthenticated {
			t.Fatalf("live server %d refused %s before its revocation: %v", i, victim.name, err)
		}
	}
	if _, err := live[0].RevokeCertificate(ctx, &herdv1.RevokeCertificateRequest{Name: victim.name}); err != nil {
		t.Fatal(err)
	}
	for i, nc := range nodes {
		_, err := nc.Checkin(ctx, &herdv1.CheckinRequest{})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("check-in of %s on live server %d after the revocation = %v; want Unauthenticated naming the revocation", victim.name, i, err)
		}
	}
}

// serverProc is a herd server running as a child process.
type serverProc struct {
	i         int
	site, dir string
	addr      string
	cmd       *exec.Cmd
	log       *testkit.SyncBuffer
	exited    chan struct{}
}

// buildHerd builds cmd/herd into the test's temporary directory: the
// servers must be processes of their own, for a kill to be a real one.
func buildHerd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/herdcm/herd/cmd/herd").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herd: %v\n%s", err, out)
	}
	return bin
}

// startServerProc starts `herd server` on 127.0.0.1:0 and waits for the
// line that names its gRPC address.
func startServerProc(t *testing.T, bin string, i int, site, dir, dsn string) *serverProc {
	t.Helper()
	s := &serverProc{i: i, site: site, dir: dir, log: &testkit.SyncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "server", "--site", site, "--dir", dir, "--store", dsn, "--listen", "127.0.0.1:0",
		"--http-listen", "off", "--debounce", "50ms", "--log-format", "text")
	// Should the test binary die, its servers go with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "herd server: gRPC on "); ok {
				a, _, _ = strings.Cut(a, ",")
				addr <- a
			}
		}
	}()
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server %d (%s) log:\n%s", i, s.addr, tail(s.log.String(), 20000))
		}
	})
	select {
	case s.addr = <-addr:
	case <-s.exited:
		t.Fatalf("server %d exited before serving:\n%s", i, s.log)
	case <-time.After(60 * time.Second):
		t.Fatalf("server %d did not serve within a minute:\n%s", i, s.log)
	}
	return s
}

// kill ends the server with SIGKILL: no graceful stop, its PostgreSQL
// sessions end with the process.
func (s *serverProc) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("server %d still runs after SIGKILL", s.i)
	}
}

// clusterAgent is a real agent daemon in a sandbox root.
type clusterAgent struct {
	name, root, certDir string
	addrs               []string
	log                 *testkit.SyncBuffer
}

func newClusterAgent(t *testing.T, name string, addrs []string) *clusterAgent {
	t.Helper()
	root, certDir := newAgentRoot(t)
	return &clusterAgent{name: name, root: root, certDir: certDir, addrs: addrs, log: &testkit.SyncBuffer{}}
}

// start enrolls the agent with token and runs its daemon until the test
// ends. It may run beside other agents' starts: it reports its failure
// rather than end the test.
func (a *clusterAgent) start(t *testing.T, caFile, token string) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(a.log, nil))
	list := strings.Join(a.addrs, ",")
	if _, err := agent.Enroll(ctx, agent.EnrollOptions{Server: list, Name: a.name, JoinToken: token, Dir: a.certDir, CAFile: caFile, Log: log}); err != nil {
		return fmt.Errorf("enrolling %s: %w", a.name, err)
	}
	// Short retries: a broken Watch stream reconnects in a fifth of a
	// second, not the production second.
	d, err := agent.NewDaemon(ctx, agent.DaemonOptions{Server: list, Root: a.root, CertDir: a.certDir, Interval: time.Hour,
		MinBackoff: 200 * time.Millisecond, WatchBackoff: 200 * time.Millisecond, ConnectWait: time.Second, Log: log})
	if err != nil {
		return fmt.Errorf("starting %s: %w", a.name, err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(runCtx); close(done) }()
	t.Cleanup(func() {
		stop()
		<-done
		d.Close()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", a.name, tail(a.log.String(), 8000))
		}
	})
	return nil
}

// connectedTo lists the servers the agent connected to, in order, as its
// log says.
func (a *clusterAgent) connectedTo() []string {
	var out []string
	for line := range strings.SplitSeq(a.log.String(), "\n") {
		if !strings.Contains(line, `msg="connected to a server"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, " server=")
		addr, _, _ := strings.Cut(rest, " ")
		out = append(out, addr)
	}
	return out
}

// runIDs lists the runs in the agent's local history.
func (a *clusterAgent) runIDs(t *testing.T) []string {
	t.Helper()
	return runIDsAt(t, a.root)
}

// issueAdmin gets an admin certificate from the server running on dir,
// through its local socket.
func issueAdmin(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	ctx := context.Background()
	lc, closeLocal, err := server.DialLocal(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLocal()
	keyPEM, csr, err := ca.NewKeyAndCSR("ops")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := lc.IssueAdmin(ctx, &herdv1.IssueAdminRequest{Name: "ops", CsrDer: csr})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(resp.CertificateDer), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dialAs connects to addr over mutual TLS as cert, trusting the CA in
// caFile and verifying the server's certificate for serverName.
func dialAs(t *testing.T, addr string, cert tls.Certificate, caFile, serverName string) *grpc.ClientConn {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rolloutIDs is the set of rollouts an admin lists.
func rolloutIDs(t *testing.T, ac herdv1.AdminClient) map[int64]bool {
	t.Helper()
	ids := map[int64]bool{}
	token := ""
	for {
		resp, err := ac.ListRollouts(context.Background(), &herdv1.ListRolloutsRequest{PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Rollouts {
			ids[r.Id] = true
		}
		if token = resp.NextPageToken; token == "" {
			return ids
		}
	}
}

func stageStatesOf(r *herdv1.Rollout) []string {
	var out []string
	for _, s := range r.Stages {
		out = append(out, s.Name+"="+s.State)
	}
	return out
}

// awaitCond polls cond until it holds or timeout passes; then it fails
// the test with what cond last said.
func awaitCond(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
