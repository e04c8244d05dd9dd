package deploy

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ---- Kubernetes -------------------------------------------------------------------------------

// kustomizations are the directories kubectl apply -k is pointed at.
var kustomizations = []string{"deploy/base", devOverlay}

// devOverlay runs one replica of every Deployment (deploy/README.md).
const devOverlay = "deploy/overlays/dev"

// kafkaTopic is Strimzi's kafka.strimzi.io/v1beta2 KafkaTopic, the fields choreo sets.
type kafkaTopic struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		TopicName  string         `json:"topicName"`
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

// manifests is one rendered kustomization, every object decoded strictly.
type manifests struct {
	dir         string
	namespace   string // the kustomization's namespace: field
	image       string // the repository's image after the images: transformer
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  map[string]corev1.ConfigMap
	secrets     map[string]corev1.Secret
	ingresses   []networkingv1.Ingress
	pdbs        []policyv1.PodDisruptionBudget
	topics      []kafkaTopic
}

// renderManifests builds dir with kustomize's own engine, as kubectl apply -k does.
func renderManifests(t *testing.T, root, dir string) manifests {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		t.Fatalf("%s: kustomize build: %v", dir, err)
	}
	m := manifests{dir: dir, configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{}}
	m.namespace, m.image = kustomizationFacts(t, root, dir)
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		id := fmt.Sprintf("%s: %s %s", dir, r.GetKind(), r.GetName())
		decode := func(apiVersion string, into any) bool {
			if r.GetApiVersion() != apiVersion {
				t.Errorf("%s: apiVersion %s, want %s", id, r.GetApiVersion(), apiVersion)
				return false
			}
			if err := yaml.UnmarshalStrict(y, into); err != nil {
				t.Errorf("%s: %v", id, err)
				return false
			}
			return true
		}
		switch r.GetKind() {
		case "Deployment":
			var o appsv1.Deployment
			if decode("apps/v1", &o) {
				m.deployments = append(m.deployments, o)
			}
		case "Service":
			var o corev1.Service
			if decode("v1", &o) {
				m.services = append(m.services, o)
			}
		case "ConfigMap":
			var o corev1.ConfigMap
			if decode("v1", &o) {
				m.configMaps[o.Name] = o
			}
		case "Secret":
			var o corev1.Secret
			if decode("v1", &o) {
				m.secrets[o.Name] = o
			}
		case "Ingress":
			var o networkingv1.Ingress
			if decode("networking.k8s.io/v1", &o) {
				m.ingresses = append(m.ingresses, o)
			}
		case "PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			if decode("policy/v1", &o) {
				m.pdbs = append(m.pdbs, o)
			}
		case "KafkaTopic":
			var o kafkaTopic
			if decode("kafka.strimzi.io/v1beta2", &o) {
				m.topics = append(m.topics, o)
			}
		default:
			t.Errorf("%s: no strict decoder for kind %s; add one to deploy/kubernetes_test.go", id, r.GetKind())
		}
		if r.GetKind() != "Namespace" && r.GetNamespace() != m.namespace {
			t.Errorf("%s: namespace %q, the kustomization sets %q", id, r.GetNamespace(), m.namespace)
		}
		for _, msg := range validation.IsDNS1123Subdomain(r.GetName()) {
			t.Errorf("%s: invalid name: %s", id, msg)
		}
	}
	return m
}

// kustomizationFacts reads dir's namespace and the image its images: transformer gives the
// repository's image, the one entry of deploy/base's images: (an overlay's entry overrides it).
func kustomizationFacts(t *testing.T, root, dir string) (namespace, image string) {
	t.Helper()
	read := func(d string) kusttypes.Kustomization {
		b, err := os.ReadFile(filepath.Join(root, d, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kusttypes.Kustomization
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", d, err)
		}
		return k
	}
	base := read("deploy/base")
	if len(base.Images) != 1 {
		t.Fatalf("deploy/base/kustomization.yaml: %d images: entries; want one, the repository's image", len(base.Images))
	}
	img := base.Images[0]
	k := read(dir)
	for _, o := range k.Images {
		if o.Name == img.Name {
			img = o
		}
	}
	image = img.Name
	if img.NewName != "" {
		image = img.NewName
	}
	if img.NewTag != "" {
		image += ":" + img.NewTag
	}
	if img.Digest != "" {
		image += "@" + img.Digest
	}
	return k.Namespace, image
}

// secretTemplate is deploy/base/secret.example.yaml: the keys a real choreo-secrets must have.
func secretTemplate(t *testing.T, root string) corev1.Secret {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy/base/secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("deploy/base/secret.example.yaml: %v", err)
	}
	return s
}

func secretValue(s corev1.Secret, key string) (string, bool) {
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

func secretKeys(s corev1.Secret) []string {
	keys := slices.Collect(maps.Keys(s.StringData))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestKubernetesManifests(t *testing.T) {
	root := built.root
	img := loadDockerfile(t, root)
	tmpl := secretTemplate(t, root)
	for _, dir := range kustomizations {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			m := renderManifests(t, root, dir)
			checkManifests(t, m, img, tmpl)
			if dir == devOverlay {
				for _, d := range m.deployments {
					if n := d.Spec.Replicas; n == nil || *n != 1 {
						t.Errorf("%s: Deployment %s does not run one replica; the dev overlay promises one of everything (its replicas: list)", dir, d.Name)
					}
				}
			}
		})
	}
}

// container is one Deployment's container with the environment it would start with.
type container struct {
	deployment *appsv1.Deployment
	spec       corev1.Container
	cmd        string
	port       int // HTTP_ADDR's
	env        map[string]string
}

func checkManifests(t *testing.T, m manifests, img image, tmpl corev1.Secret) {
	if len(m.deployments) == 0 {
		t.Fatalf("%s: renders no Deployment", m.dir)
	}
	for name, s := range m.secrets {
		if name == tmpl.Name {
			t.Errorf("%s renders Secret %s under the template's name: kubectl apply -k would overwrite real credentials", m.dir, name)
		}
		if keys := secretKeys(s); !slices.Equal(keys, secretKeys(tmpl)) {
			t.Errorf("%s: Secret %s has keys %v, secret.example.yaml %v", m.dir, name, keys, secretKeys(tmpl))
		}
	}

	var containers []container
	byCmd := map[string]*appsv1.Deployment{}
	receivers := map[string][]string{} // ConfigMap → the subcommands that get all of it through envFrom
	for i := range m.deployments {
		d := &m.deployments[i]
		id := m.dir + ": Deployment " + d.Name
		pod := d.Spec.Template.Spec
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", id, d.Spec.Selector, d.Spec.Template.Labels)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service-account token; deploy/README.md promises none", id)
		}
		var pdbs []string
		for _, p := range m.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pdbs = append(pdbs, p.Name)
				if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 {
					t.Errorf("%s: PodDisruptionBudget %s has no maxUnavailable >= 1; at one replica it would block node drains", id, p.Name)
				}
			}
		}
		if len(pdbs) != 1 {
			t.Errorf("%s: selected by PodDisruptionBudgets %v; want exactly one", id, pdbs)
		}
		for _, c := range pod.Containers {
			cid := id + " container " + c.Name
			if c.Image != m.image {
				t.Errorf("%s: image %s; want the repository's image %s (kustomization images:)", cid, c.Image, m.image)
			}
			if len(c.Command) > 0 && !slices.Equal(c.Command, img.entrypoint) {
				t.Errorf("%s: command %v replaces the image's ENTRYPOINT %v", cid, c.Command, img.entrypoint)
			}
			if len(c.Args) != 1 {
				t.Errorf("%s: args %v; want one subcommand", cid, c.Args)
				continue
			}
			env, ambient, errs := containerEnv(m, c, img, tmpl)
			port, perrs := checkProcessEnv(c.Args[0], env, ambient)
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil {
					receivers[from.ConfigMapRef.Name] = append(receivers[from.ConfigMapRef.Name], c.Args[0])
				}
			}
			for _, err := range append(errs, perrs...) {
				t.Errorf("%s: %v", cid, err)
			}
			if other, dup := byCmd[c.Args[0]]; dup {
				t.Errorf("%s: Deployment %s runs `choreo %s` too", cid, other.Name, c.Args[0])
			}
			byCmd[c.Args[0]] = d
			containers = append(containers, container{deployment: d, spec: c, cmd: c.Args[0], port: port, env: env})
			checkContainer(t, cid, pod, c, port)
			if v := env["DATABASE_URL"]; v != "" {
				if u, err := url.Parse(v); err != nil || strings.TrimPrefix(u.Path, "/") != c.Args[0] {
					t.Errorf("%s: DATABASE_URL names database %q; each service owns the database named after it (%q)", cid, strings.TrimPrefix(u.Path, "/"), c.Args[0])
				}
			}
		}
	}

	// A shared ConfigMap's key that no process receiving it reads is a typo or a setting of a process
	// that does not get it.
	for _, name := range slices.Sorted(maps.Keys(receivers)) {
		for _, key := range slices.Sorted(maps.Keys(m.configMaps[name].Data)) {
			if checkEnvName(key) == nil && !runtimeEnv[key] && !built.reads(key, receivers[name]...) {
				t.Errorf("%s: ConfigMap %s sets %s, which none of %v reads", m.dir, name, key, receivers[name])
			}
		}
	}

	portOf := map[*appsv1.Deployment]int{}
	for _, c := range containers {
		portOf[c.deployment] = c.port
	}
	// Services: each selects one Deployment and targets its HTTP port.
	svcTarget := map[string]*appsv1.Deployment{}
	for _, s := range m.services {
		id := m.dir + ": Service " + s.Name
		var selected []*appsv1.Deployment
		for i := range m.deployments {
			d := &m.deployments[i]
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				selected = append(selected, d)
			}
		}
		if len(selected) != 1 {
			t.Errorf("%s: selects %d Deployments; want one", id, len(selected))
			continue
		}
		d := selected[0]
		svcTarget[s.Name] = d
		for _, p := range s.Spec.Ports {
			if got := containerPort(d.Spec.Template.Spec.Containers, p.TargetPort); got != portOf[d] {
				t.Errorf("%s: port %s targets %s, which is container port %d; %s listens on %d (HTTP_ADDR)", id, p.Name, p.TargetPort.String(), got, d.Name, portOf[d])
			}
		}
	}
	// The Ingress reaches the ingress Deployment through its Service.
	if len(m.ingresses) == 0 {
		t.Errorf("%s: no Ingress", m.dir)
	}
	for _, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				t.Errorf("%s: Ingress %s rule %s has no http paths", m.dir, ing.Name, rule.Host)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				be := p.Backend.Service
				if be == nil {
					t.Errorf("%s: Ingress %s path %s has no Service backend", m.dir, ing.Name, p.Path)
					continue
				}
				svc := findService(m.services, be.Name)
				switch {
				case svc == nil:
					t.Errorf("%s: Ingress %s routes to Service %s, which does not exist", m.dir, ing.Name, be.Name)
				case !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (be.Port.Name != "" && sp.Name == be.Port.Name) || (be.Port.Number != 0 && sp.Port == be.Port.Number)
				}):
					t.Errorf("%s: Ingress %s routes to port %+v, which Service %s does not have", m.dir, ing.Name, be.Port, be.Name)
				case svcTarget[be.Name] == nil || svcTarget[be.Name] != byCmd["ingress"]:
					t.Errorf("%s: Ingress %s routes to Service %s, which does not select the Deployment running `choreo ingress`", m.dir, ing.Name, be.Name)
				}
			}
		}
	}
	// Upstream URLs (ORDER_URL, ...) name the Service of the Deployment running that subcommand.
	for _, c := range containers {
		for k, v := range c.env {
			upstream, ok := strings.CutSuffix(k, "_URL")
			if !ok || k == "DATABASE_URL" || v == "" {
				continue
			}
			cmd := strings.ToLower(upstream)
			u, err := url.Parse(v)
			if err != nil {
				t.Errorf("%s: %s=%s: %v", m.dir, k, v, err)
				continue
			}
			svcName, _, _ := strings.Cut(u.Hostname(), ".")
			svc := findService(m.services, svcName)
			switch {
			case svc == nil:
				t.Errorf("%s: %s=%s names Service %s, which does not exist", m.dir, k, v, svcName)
			case svcTarget[svcName] != byCmd[cmd]:
				t.Errorf("%s: %s=%s: Service %s does not select the Deployment running `choreo %s`", m.dir, k, v, svcName, cmd)
			case !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return strconv.Itoa(int(sp.Port)) == u.Port() }):
				t.Errorf("%s: %s=%s: Service %s has no port %s", m.dir, k, v, svcName, u.Port())
			}
		}
	}
	checkTopics(t, m, containers)
}

// containerEnv is the environment the container starts with: the image's ENV, then envFrom, then
// env; Secret values come from the rendered Secret or, for one created out of band, the template.
// ambient are the variables that come from the image or a whole ConfigMap, not from the container's env.
func containerEnv(m manifests, c corev1.Container, img image, tmpl corev1.Secret) (env map[string]string, ambient map[string]bool, errs []error) {
	env, ambient = maps.Clone(img.env), map[string]bool{}
	for k := range img.env {
		ambient[k] = true
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[from.ConfigMapRef.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("envFrom ConfigMap %s is not rendered", from.ConfigMapRef.Name))
			}
			maps.Copy(env, cm.Data) // every key becomes a variable, so checkProcessEnv judges them all
			for k := range cm.Data {
				ambient[k] = true
			}
		case from.SecretRef != nil:
			errs = append(errs, fmt.Errorf("envFrom Secret %s: map secret keys one by one", from.SecretRef.Name))
		}
	}
	for _, e := range c.Env {
		delete(ambient, e.Name)
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := m.configMaps[ref.Name].Data[ref.Key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key))
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secretValue(tmpl, ref.Key)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: key %s is not in deploy/base/secret.example.yaml (%v)", e.Name, ref.Key, secretKeys(tmpl)))
			}
			if s, rendered := m.secrets[ref.Name]; rendered {
				if v, ok = secretValue(s, ref.Key); !ok {
					errs = append(errs, fmt.Errorf("%s: rendered Secret %s has no key %s", e.Name, ref.Name, ref.Key))
				}
			} else if ref.Name != tmpl.Name {
				errs = append(errs, fmt.Errorf("%s: Secret %s is neither rendered nor the template's %s", e.Name, ref.Name, tmpl.Name))
			}
			if ref.Optional == nil || !*ref.Optional || v != "" {
				env[e.Name] = v
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			if !runtimeEnv[e.Name] {
				errs = append(errs, fmt.Errorf("%s comes from %s; only Go runtime variables are", e.Name, e.ValueFrom.ResourceFieldRef.Resource))
			}
			env[e.Name] = "set-by-kubelet"
		default:
			errs = append(errs, fmt.Errorf("%s: unsupported valueFrom", e.Name))
		}
	}
	return env, ambient, errs
}

// checkContainer: probes, ports, resources and the restricted Pod Security Standard.
func checkContainer(t *testing.T, id string, pod corev1.PodSpec, c corev1.Container, port int) {
	t.Helper()
	probes := []struct {
		name string
		p    *corev1.Probe
		path string
		need bool
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz", true},
		{"livenessProbe", c.LivenessProbe, "/healthz", true},
		{"startupProbe", c.StartupProbe, "/healthz", false},
	}
	for _, pr := range probes {
		switch {
		case pr.p == nil && pr.need:
			t.Errorf("%s: no %s", id, pr.name)
		case pr.p == nil:
		case pr.p.HTTPGet == nil:
			t.Errorf("%s: %s is not an httpGet", id, pr.name)
		case pr.p.HTTPGet.Path != pr.path:
			t.Errorf("%s: %s GETs %s, want %s", id, pr.name, pr.p.HTTPGet.Path, pr.path)
		case containerPort([]corev1.Container{c}, pr.p.HTTPGet.Port) != port:
			t.Errorf("%s: %s hits port %s, but HTTP_ADDR listens on %d", id, pr.name, pr.p.HTTPGet.Port.String(), port)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		t.Errorf("%s: declares ports %v, not HTTP_ADDR's %d", id, c.Ports, port)
	}
	for _, kind := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := kind.list[r]; !ok || q.IsZero() {
				t.Errorf("%s: resources.%s.%s is not set", id, kind.name, r)
			}
		}
	}
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	pick := func(c, p *bool) bool {
		if c != nil {
			return *c
		}
		return p != nil && *p
	}
	if !pick(sc.RunAsNonRoot, psc.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not true", id)
	}
	if u := sc.RunAsUser; (u != nil && *u == 0) || (u == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		t.Errorf("%s: runs as uid 0", id)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false (restricted Pod Security Standard)", id)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities do not drop ALL (restricted Pod Security Standard)", id)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		t.Errorf("%s: no RuntimeDefault/Localhost seccompProfile (restricted Pod Security Standard)", id)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: the root filesystem is writable; deploy/README.md promises read-only", id)
	}
}

// containerPort resolves a probe's or Service's port (a name or a number) in containers; 0 when
// it names no declared port.
func containerPort(cs []corev1.Container, p intstr.IntOrString) int {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return int(cp.ContainerPort)
			}
		}
	}
	if p.Type == intstr.Int {
		return int(p.IntVal) // a number needs no declaration
	}
	return 0
}

func findService(svcs []corev1.Service, name string) *corev1.Service {
	for i := range svcs {
		if svcs[i].Name == name {
			return &svcs[i]
		}
	}
	return nil
}

// checkTopics: the KafkaTopics are cmd/choreo/system.Topics with the partitions the processes use,
// on the Strimzi cluster KAFKA_BROKERS points at.
func checkTopics(t *testing.T, m manifests, containers []container) {
	t.Helper()
	if len(m.topics) == 0 {
		return // a managed Kafka: the overlay dropped topics.yaml (deploy/README.md)
	}
	partitions := ""
	for _, c := range containers {
		if v := c.env["KAFKA_PARTITIONS"]; v != "" && partitions != "" && v != partitions {
			t.Errorf("%s: Deployment %s has KAFKA_PARTITIONS=%s, another %s", m.dir, c.deployment.Name, v, partitions)
		} else if v != "" {
			partitions = v
		}
	}
	if partitions == "" {
		partitions = built.settingDefault("KAFKA_PARTITIONS")
	}
	got := map[string]topic{}
	clusters := map[string]bool{}
	for _, kt := range m.topics {
		id := m.dir + ": KafkaTopic " + kt.Metadata.Name
		name := kt.Spec.TopicName
		if name == "" {
			name = kt.Metadata.Name
		}
		configs := map[string]string{}
		for k, v := range kt.Spec.Config {
			configs[k] = fmt.Sprint(v)
		}
		// Strimzi-only settings; cmd/choreo/system.Topics leaves them to the broker.
		minISR, _ := strconv.Atoi(configs["min.insync.replicas"])
		delete(configs, "min.insync.replicas")
		if kt.Spec.Replicas < 1 || minISR > kt.Spec.Replicas {
			t.Errorf("%s: replicas %d, min.insync.replicas %d: writes with acks=all could never succeed", id, kt.Spec.Replicas, minISR)
		}
		got[name] = topic{Name: name, Partitions: kt.Spec.Partitions, Configs: configs}
		cluster := kt.Metadata.Labels["strimzi.io/cluster"]
		if cluster == "" {
			t.Errorf("%s: no strimzi.io/cluster label: no Topic Operator reconciles it", id)
		}
		clusters[cluster] = true
	}
	compareTopics(t, m.dir, got, wantTopics(t, partitions))
	for _, c := range containers {
		for _, b := range strings.Split(c.env["KAFKA_BROKERS"], ",") {
			host, port, _ := net.SplitHostPort(b)
			cluster, isStrimzi := strings.CutSuffix(host, "-kafka-bootstrap")
			if b != "" && (!isStrimzi || !clusters[cluster] || port != "9092") {
				t.Errorf("%s: Deployment %s: KAFKA_BROKERS %s is not the plain bootstrap (<cluster>-kafka-bootstrap:9092) of the KafkaTopics' cluster %v", m.dir, c.deployment.Name, b, slices.Sorted(maps.Keys(clusters)))
			}
		}
	}
}
