package auditevents

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ReportingController is the reportingController of every Event this package writes.
const ReportingController = "sysctl-placement.io/webhook"

// maxNameLength is the longest object name the API server accepts (a DNS subdomain).
const maxNameLength = 253

// maxInstanceLength is the API server's limit on reportingInstance.
const maxInstanceLength = 128

// EventName is the name of the Event about the object with this name and UID, for this
// reason, in interval number bucket (0 for pod Events, which are recorded once ever).
// It is deterministic so that the API server itself refuses a second copy; the
// regarding object's name comes first so that `kubectl get events` sorts naturally.
func EventName(regardingName string, uid types.UID, reason string, bucket int64) string {
	sum := sha256.Sum256([]byte(string(uid) + "/" + reason + "/" + strconv.FormatInt(bucket, 10)))
	suffix := "." + hex.EncodeToString(sum[:8])
	prefix := regardingName
	if len(prefix) > maxNameLength-len(suffix) {
		prefix = prefix[:maxNameLength-len(suffix)]
	}
	// A DNS subdomain's labels end with an alphanumeric character.
	prefix = strings.TrimRight(prefix, ".-")
	if prefix == "" {
		prefix = "sysctl-placement"
	}
	return prefix + suffix
}

// newEvent builds the events.k8s.io/v1 Event for e about regarding.
func newEvent(regarding corev1.ObjectReference, e Entry, bucket int64, instance string, now time.Time) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      EventName(regarding.Name, regarding.UID, e.Reason, bucket),
			Namespace: regarding.Namespace,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: ReportingController,
		ReportingInstance:   instance,
		Action:              e.Action,
		Reason:              e.Reason,
		Regarding:           regarding,
		Note:                truncateNote(e.Note),
		Type:                e.Type,
	}
}

// reportingInstance makes a valid reportingInstance from the replica's identity.
func reportingInstance(identity string) string {
	s := ReportingController + "-" + identity
	if len(s) > maxInstanceLength {
		s = s[:maxInstanceLength]
	}
	return s
}
