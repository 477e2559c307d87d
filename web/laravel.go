package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// The client and admin APIs answer errors the way the seed product (a
// Laravel application) does: {"message": ...} for most statuses, and for 422
// {"message": "The given data was invalid.", "errors": {field: [messages]}}.

// lang picks the message language from ?hl= or the Hl header, as the seed
// product does; English unless Russian is asked for.
func lang(c *gin.Context) string {
	hl := c.Query("hl")
	if hl == "" {
		hl = c.GetHeader("Hl")
	}
	if strings.HasPrefix(strings.ToLower(hl), "ru") {
		return "ru"
	}
	return "en"
}

// messages holds every text of the client and admin APIs, by key and
// language. Validation rules use ":attribute" and ":param" like Laravel.
var messages = map[string][2]string{ // [en, ru]
	"invalid":         {"The given data was invalid.", "Переданные данные некорректны."},
	"unauthenticated": {"Unauthenticated.", "Не авторизован."},
	"forbidden":       {"This action is unauthorized.", "Действие не разрешено."},
	"not_found":       {"Not found.", "Не найдено."},
	"method":          {"The :method method is not supported for this route. Supported methods: :allowed.", "Метод :method не поддерживается для этого адреса. Поддерживаются: :allowed."},
	"bad_api":         {"The api parameter must be client, admin or integration.", "Параметр api должен быть client, admin или integration."},
	"bad_permission":  {"The permission parameter must name one permission, once.", "Параметр permission должен называть одно право, один раз."},
	"bad_query":       {"The query string is malformed.", "Строка запроса некорректна."},
	"too_many":        {"Too Many Attempts.", "Слишком много попыток."},
	"captcha_wrong":   {"The captcha is incorrect.", "Неверно введена капча."},
	"too_large":       {"The request body is too large.", "Тело запроса слишком велико."},
	"bad_body":        {"The request body could not be read.", "Не удалось прочитать тело запроса."},
	"timeout":         {"The request body took too long to arrive.", "Тело запроса передавалось слишком долго."},
	"server_error":    {"Server Error", "Ошибка сервера"},
	"unavailable":     {"Service Unavailable. Try again later.", "Сервис временно недоступен. Повторите попытку позже."},
	"no_admin":        {"This account has no access to the admin panel.", "У этой учётной записи нет доступа к панели администратора."},

	"credentials": {"These credentials do not match our records.", "Неверный логин или пароль."},
	"disabled":    {"This account is disabled.", "Эта учётная запись отключена."},
	"expired":     {"This account has expired.", "Срок действия этой учётной записи истёк."},
	"no_client":   {"This account may not use the client API.", "Этой учётной записи запрещён вход в клиентские приложения."},

	"rule.required":        {"The :attribute field is required.", "Поле :attribute обязательно для заполнения."},
	"rule.string":          {"The :attribute must be a string.", "Поле :attribute должно быть строкой."},
	"rule.min":             {"The :attribute must be at least :param characters.", "Количество символов в поле :attribute должно быть не меньше :param."},
	"rule.max":             {"The :attribute may not be greater than :param characters.", "Количество символов в поле :attribute не может превышать :param."},
	"rule.min_bytes":       {"The :attribute must be at least :param bytes long.", "Длина поля :attribute в байтах должна быть не меньше :param."},
	"rule.max_bytes":       {"The :attribute may not be longer than :param bytes.", "Длина поля :attribute в байтах не может превышать :param."},
	"rule.bcrypt_cost":     {"The :attribute must have a bcrypt cost from 8 to 14; this one has :param.", "Стоимость bcrypt в поле :attribute должна быть от 8 до 14, а не :param."},
	"rule.min_value":       {"The :attribute must be at least :param.", "Значение поля :attribute должно быть не меньше :param."},
	"rule.max_value":       {"The :attribute may not be greater than :param.", "Значение поля :attribute не может быть больше :param."},
	"rule.unique":          {"The :attribute has already been taken.", "Такое значение поля :attribute уже существует."},
	"rule.in":              {"The selected :attribute is invalid.", "Выбранное значение для :attribute ошибочно."},
	"rule.exists":          {"The selected :attribute is invalid.", "Выбранное значение для :attribute некорректно."},
	"rule.permission":      {"The permission :param does not exist.", "Права :param не существует."},
	"rule.login_chars":     {"The :attribute may contain only letters, digits and @ . _ - + (no spaces, invisible or control characters, no accents on their own).", "Поле :attribute может содержать только буквы, цифры и @ . _ - + (без пробелов, невидимых и управляющих символов, отдельных диакритических знаков)."},
	"rule.login_script":    {"The :attribute must use letters of one script only (all Latin, or all Cyrillic...).", "Буквы в поле :attribute должны быть из одного алфавита (только латиница, или только кириллица...)."},
	"rule.login_lookalike": {"The :attribute looks like an existing login.", "Значение поля :attribute выглядит как уже существующий логин."},
	"rule.bidi":            {"The :attribute may not contain characters that change the direction of text.", "Поле :attribute не может содержать символы, меняющие направление текста."},
	"rule.bcrypt":          {"The :attribute must be a bcrypt hash.", "Поле :attribute должно быть хешем bcrypt."},
	"rule.array":           {"The :attribute must be an array.", "Поле :attribute должно быть массивом."},
	"rule.integer":         {"The :attribute must be an integer.", "Поле :attribute должно быть целым числом."},
	"rule.boolean":         {"The :attribute field must be true or false.", "Поле :attribute должно иметь значение логического типа."},
	"rule.date":            {"The :attribute is not a valid date (YYYY-MM-DD HH:MM:SS).", "Поле :attribute не является датой (ГГГГ-ММ-ДД ЧЧ:ММ:СС)."},
	"rule.prohibited":      {"The :attribute field is prohibited.", "Поле :attribute запрещено."},

	// POST /api/admin/v1/auth/password.
	"rule.current_password": {"The :attribute is incorrect.", "Неверно указан :attribute."},
	"own_password":          {"Change your own password with your current one: POST /api/admin/v1/auth/password.", "Свой пароль меняется с вводом текущего: POST /api/admin/v1/auth/password."},
}

// attributes are the Russian names of request fields; English uses the
// field name with underscores as spaces, as Laravel does.
var attributes = map[string]string{
	"login":               "логин",
	"password":            "пароль",
	"current_password":    "текущий пароль",
	"password_hash":       "хеш пароля",
	"session_id":          "сессия",
	"captcha":             "капча",
	"key":                 "ключ",
	"name":                "имя",
	"apis":                "доступ",
	"permissions":         "права",
	"sessions_limit":      "лимит сессий",
	"ptz_priority":        "приоритет PTZ",
	"expired_at":          "срок действия",
	"disabled":            "отключён",
	"admin_camera_groups": "группы камер",
	"dhcp_subnet_groups":  "группы подсетей DHCP",
	"can_update_password": "смена пароля",
}

// msg returns the message for key in the request's language with
// replacements given as ":name", value pairs.
func msg(c *gin.Context, key string, repl ...string) string {
	return text(lang(c), key, repl...)
}

func text(lang, key string, repl ...string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	t := m[0]
	if lang == "ru" {
		t = m[1]
	}
	if len(repl) > 0 {
		t = strings.NewReplacer(repl...).Replace(t)
	}
	return t
}

func attribute(lang, field string) string {
	if lang == "ru" {
		if a, ok := attributes[field]; ok {
			return a
		}
	}
	return strings.ReplaceAll(field, "_", " ")
}

// FieldMessage renders a validation problem as the APIs show it, in lang
// ("en" or "ru"); the command line uses it too.
func FieldMessage(lang string, f auth.FieldError) string {
	return text(lang, "rule."+f.Code, ":attribute", attribute(lang, f.Field), ":param", f.Param)
}

// fieldErrors accumulates Laravel's per-field messages in order.
type fieldErrors map[string][]string

func (f fieldErrors) add(c *gin.Context, field, rule, param string) {
	f[field] = append(f[field], FieldMessage(lang(c), auth.FieldError{Field: field, Code: rule, Param: param}))
}

// validationBody is Laravel's 422 answer, message first as Laravel sends it.
type validationBody struct {
	Message string      `json:"message"`
	Errors  fieldErrors `json:"errors"`
}

// invalid answers 422 with the given field messages.
func invalid(c *gin.Context, errs fieldErrors) {
	c.AbortWithStatusJSON(http.StatusUnprocessableEntity, validationBody{msg(c, "invalid"), errs})
}

// invalidField answers 422 with one message for one field.
func invalidField(c *gin.Context, field, key string) {
	invalid(c, fieldErrors{field: {msg(c, key)}})
}

// message answers status with {"message": ...}.
func message(c *gin.Context, status int, key string) {
	c.AbortWithStatusJSON(status, gin.H{"message": msg(c, key)})
}

// laravelError writes err in the Laravel envelope. Handlers map errors whose
// meaning depends on the endpoint themselves, before calling it.
func (s *server) laravelError(c *gin.Context, err error) {
	var verr *auth.ValidationError
	switch {
	case errors.As(err, &verr):
		errs := fieldErrors{}
		for _, f := range verr.Fields {
			errs.add(c, f.Field, f.Code, f.Param)
		}
		invalid(c, errs)
	case errors.Is(err, auth.ErrBadCredentials):
		invalidField(c, "login", "credentials")
	case errors.Is(err, auth.ErrAccountDisabled):
		invalidField(c, "login", "disabled")
	case errors.Is(err, auth.ErrAccountExpired):
		invalidField(c, "login", "expired")
	case errors.Is(err, auth.ErrTokenMissing), errors.Is(err, auth.ErrTokenInvalid), errors.Is(err, auth.ErrTokenExpired):
		message(c, http.StatusUnauthorized, "unauthenticated")
	case errors.Is(err, auth.ErrOwnPassword):
		message(c, http.StatusForbidden, "own_password")
	case errors.Is(err, auth.ErrForbidden):
		message(c, http.StatusForbidden, "forbidden")
	case errors.Is(err, auth.ErrUserNotFound), errors.Is(err, auth.ErrSessionNotFound):
		message(c, http.StatusNotFound, "not_found")
	default:
		s.internalError(c, err)
	}
}

// internalError logs the cause and answers 500 in the API's envelope.
// Errors the client caused are not internal: every handler falls back to
// this function, so it answers those (clientFault) instead, and a 500 or
// an ERROR line always means the box is at fault.
func (s *server) internalError(c *gin.Context, err error) {
	if s.clientFault(c, err) {
		return
	}
	if errors.Is(err, auth.ErrUnavailable) {
		s.unavailable(c, err)
		return
	}
	s.log.Error("internal error", "path", c.Request.URL.Path, "err", err)
	s.envelope(c).fault(c, faultInternal)
}

// unavailable answers 503 for a store that cannot answer now (an etcd
// site without a majority). The box is not at fault and a flood of
// requests during an outage must not flood the log: one WARN line a
// minute at most, with the cause; /healthz reports it meanwhile.
func (s *server) unavailable(c *gin.Context, err error) {
	now := time.Now().Unix()
	if last := s.unavailableLogged.Load(); now-last >= 60 && s.unavailableLogged.CompareAndSwap(last, now) {
		s.log.Warn("the store is unavailable; answering 503 (logged once a minute)", "path", c.Request.URL.Path, "err", err)
	}
	s.envelope(c).fault(c, faultUnavailable)
}

// formatTime is the seed product's "YYYY-MM-DD HH:MM:SS", in the box's
// local time zone.
func formatTime(t time.Time) string { return t.Local().Format(time.DateTime) }
