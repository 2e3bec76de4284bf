# frozen_string_literal: true

require "securerandom"

module BerryMQ
  # One session with a berryMQ node, in one of the three styles (docs/protocol.md):
  #
  # - :interconnect (style 01): every non-local message twittered here is forwarded to the
  #   node, and the node forwards its messages here (over TCP on the same connection; over
  #   HTTP to a small server of ours that the node calls back);
  # - :oneway (style 02): this process sends with #send_message;
  # - :queue (style 03): the node keeps a queue of a pattern, pulled with #get/#get_nowait.
  #
  # Every style can #send_message and #ask. Made by BerryMQ.interconnect,
  # BerryMQ.connect_oneway and BerryMQ.connect_via_queue.
  class Connection
    DEFAULT_TTL = 1000
    DEFAULT_TIMEOUT = 10.0
    ADDRESS = %r{\A(tcp|http)://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?\z}.freeze
    # The node caps one blocking get at 30 s (max_get_wait); ask at most this per call.
    GET_SLICE = 25.0
    # What a session token may be (docs/protocol.md, Sessions and tokens): 1 to 256
    # printable ASCII characters without spaces. Any other answer is malformed.
    TOKEN = /\A[\x21-\x7E]{1,256}\z/.freeze
    # The longest a close_connection waits for the node (at exit too): closing a session
    # the node would end after its ttl anyway is not worth a long wait.
    CLOSE_TIMEOUT = 2.0

    attr_reader :url, :style, :token, :pattern, :bus
    # The session's ttl in seconds: the one given, or without one DEFAULT_TTL, or the
    # node's max_ttl when that is less (as a client that leaves ttl out gets).
    attr_reader :ttl

    # "tcp://host:port", "http://host:port", or [host, port] (HTTP, as in berryMQ 0.2).
    def self.normalize(addr)
      addr = "http://#{addr[0]}:#{addr[1]}" if addr.is_a?(Array) && addr.size == 2
      match = ADDRESS.match(addr.to_s)
      unless match
        raise ArgumentError, "not a berryMQ address: #{addr.inspect} (write tcp://host:port or http://host:port)"
      end

      [match[1], match[2].delete("[]"), Integer(match[3]), "#{match[1]}://#{match[2]}:#{match[3]}"]
    end

    # +max_size+: the largest request sent, in bytes of JSON: the node's max_size setting
    # (1 MiB by default). A larger message raises MessageTooLarge before it is sent.
    # +ttl+ nil (not given): DEFAULT_TTL, or the node's max_ttl when that is less (a node
    # refusing DEFAULT_TTL as over its max_ttl is asked again with its limit, as the Python
    # client does); a ttl given over the node's max_ttl is refused (RemoteError, Limit
    # reached).
    def initialize(addr, style, ttl: nil, pattern: nil, timeout: DEFAULT_TIMEOUT,
                   secret: ENV.fetch("BERRYMQ_SECRET", nil), max_size: JSONRPC::MAX_SIZE, bus: BerryMQ.bus)
      @ttl_given = !ttl.nil?
      ttl = DEFAULT_TTL if ttl.nil?
      unless ttl.is_a?(Numeric) && ttl.real? && ttl.finite? && ttl.positive?
        raise ArgumentError, "ttl must be a positive finite number of seconds, got #{ttl.inspect}"
      end
      unless max_size.is_a?(Integer) && max_size >= 2 * JSONRPC::MESSAGE_ENVELOPE
        # a node's own floor (its max_size setting): a message may take max_size less the
        # MESSAGE_ENVELOPE bytes of the request around it
        raise ArgumentError, "max_size must be an Integer of at least #{2 * JSONRPC::MESSAGE_ENVELOPE} bytes (a " \
                             "message may take max_size less the #{JSONRPC::MESSAGE_ENVELOPE} bytes of the " \
                             "request around it), got #{max_size.inspect}"
      end

      timeout = BerryMQ.wait_seconds(timeout, "timeout")
      scheme, host, port, @url = Connection.normalize(addr)
      @style = style
      @bus = bus
      @secret = secret
      @timeout = timeout
      @pattern = pattern && Identifier.new(pattern)
      @closed = false
      @lost = nil # the error that lost it (connection_lost), for the calls it ends
      @open = false # set once the session is open: a loss before then fails the connect instead
      @open_lock = Mutex.new
      channel_class = scheme == "tcp" ? TcpChannel : HttpChannel
      @max_size = max_size
      @channel = channel_class.new(@url, host, port, handler: method(:answer), timeout: timeout,
                                                     on_close: method(:connection_lost), max_size: max_size)
      open_session(ttl)
      @open_lock.synchronize { @open = true }
      connection_lost(@early_loss) if @early_loss
    rescue StandardError
      @closed = true # never open: the end of its channel is no loss to report
      @renewal&.kill
      @outbox&.close(0)
      @channel&.close
      raise
    end

    def interconnected?
      @style == :interconnect && !@closed
    end

    def closed?
      @closed
    end

    # Sends one message to the node and returns once the node's receivers have it.
    # Raises ArgumentError for a local name (it never leaves the process) or arguments
    # JSON cannot hold, MessageTooLarge (before sending) for a message over max_size less
    # 512 bytes as a node measures it (JSONRPC.check_message_size), QueueFull when a queue
    # on the node refused it (Queue is full, -32005; #data names the node's setting), and
    # RemoteError for another refusal.
    def send_message(identifier, *args, **kwargs)
      ident = remote_identifier(identifier)
      JSONRPC.check_message(ident, args, kwargs)
      JSONRPC.check_message_size(ident, args, kwargs, @max_size)
      begin
        call("send_message", { "token" => @token, "identifier" => ident.to_s, "args" => args, "kwargs" => kwargs })
      rescue RemoteError => e
        raise unless e.code == JSONRPC::CODES[:queue_full]

        raise QueueFull.new("#{@url} refused #{ident}: #{JSONRPC.full_queue(e.data)}; it was not stored there",
                            e.data)
      end
      nil
    end

    # The next message of the node's queue (style 03). Waits up to +timeout+ seconds (nil:
    # until one comes) when +block+; raises BerryMQ::Empty when none came. Over TCP at most
    # 16 calls that wait (get, ask) are outstanding on one connection (the node's cap); the
    # others wait their turn here, in order, within their own timeout.
    def get(block: true, timeout: nil)
      need_queue("get")
      timeout = BerryMQ.wait_seconds(timeout, "get: timeout", nil_ok: true)
      return get_nowait unless block
      raise ConnectionClosed, "the connection to #{@url} (#{@style}) is closed" if @closed

      deadline = timeout && (BerryMQ.monotonic + timeout)
      loop do
        got = @channel.waiting(deadline) do
          wait = deadline ? [[deadline - BerryMQ.monotonic, 0].max, GET_SLICE].min : GET_SLICE
          call("get", { "token" => @token, "block" => true, "timeout" => wait }, wait + @timeout)
        rescue RemoteError => e
          raise unless e.code == JSONRPC::CODES[:empty]

          :empty
        end
        return from_wire(got) unless %i[empty expired].include?(got)
        if deadline && BerryMQ.monotonic >= deadline
          raise Empty, "nothing came to the queue of #{@pattern} at #{@url} within #{JSONRPC.seconds(timeout)} s"
        end
      end
    end

    # The next message of the node's queue, or BerryMQ::Empty at once.
    def get_nowait
      need_queue("get_nowait")
      from_wire(call("get_nowait", { "token" => @token }))
    rescue RemoteError => e
      raise unless e.code == JSONRPC::CODES[:empty]

      raise Empty, "the queue of #{@pattern} at #{@url} is empty"
    end

    # The replies of the node's receivers of +identifier+: values, and ReplyError entries
    # for receivers that raised. Raises ArgumentError for a local name (before sending),
    # as send_message does.
    def ask(identifier, *args, timeout: 5.0, **kwargs)
      timeout = BerryMQ.wait_seconds(timeout, "ask: timeout")
      ask_message(Message.new(remote_identifier(identifier), args, kwargs, uid: @bus.new_uid), timeout)
    end

    # #ask with +message+ as it is, its uid included (+timeout+ checked by the caller):
    # BerryMQ.ask asks every connection with one message, so that a node reached by
    # several of them runs its receivers once (docs/protocol.md, ask).
    def ask_message(message, timeout)
      ident = remote_identifier(message.identifier)
      args = message.args
      kwargs = message.kwargs
      JSONRPC.check_message(ident, args, kwargs)
      JSONRPC.check_message_size(ident, args, kwargs, @max_size, message.uid)
      deadline = BerryMQ.monotonic + timeout
      @outbox&.flush(timeout, report: false) # what was twittered before reaches the node first
      params = { "identifier" => ident.to_s, "args" => args, "kwargs" => kwargs }
      params["uid"] = message.uid if message.uid
      result = @channel.waiting(deadline) do
        left = [deadline - BerryMQ.monotonic, 0].max
        call("ask", params.merge("timeout" => left, "token" => @token), left + 1)
      end
      if result == :expired
        raise TransportError, "#{@url} was not asked #{ident} within #{JSONRPC.seconds(timeout)} s: the connection's " \
                              "#{TcpChannel::MAX_WAITING} calls that wait at the node (get, ask) were busy all along"
      end
      unless result.is_a?(Array)
        raise TransportError, "#{@url} answered ask with #{result.class}, not an array"
      end

      result.map do |entry|
        next entry["value"] if entry.is_a?(Hash) && entry.key?("value")
        next ReplyError.from_h(entry["error"]) if entry.is_a?(Hash) && entry["error"].is_a?(Hash)

        raise TransportError, "#{@url} answered ask with a malformed entry"
      end
    end

    # Queues +message+ for the node (the bus calls this for interconnections).
    def forward(message)
      JSONRPC.check_message_size(message.identifier, message.args, message.kwargs, @max_size, message.uid)
      @outbox.put(message.to_wire)
    end

    # Waits until every message forwarded so far was acknowledged by the node; false on
    # timeout. Only interconnections forward; for the other styles it is true at once.
    # Raises QueueFull saying how many messages the node refused since the last flush (the
    # others were delivered), ConnectionClosed when the connection failed (what it held
    # was lost, see #losses).
    def flush(timeout = nil)
      timeout = BerryMQ.wait_seconds(timeout, "flush: timeout", nil_ok: true)
      @outbox ? @outbox.flush(timeout) : true
    end

    # How many forwarded messages were lost: refused by the node, or not sent because the
    # connection failed.
    def lost
      @outbox ? @outbox.lost : 0
    end

    # The forwarded messages lost, by reason: "refused: queue full" (the node refused
    # them), "not sent: connection failed or closed".
    def losses
      @outbox ? @outbox.losses : {}
    end

    # Closes the session (what is queued for the node is sent first) and the connection.
    # Bounded: the outbox gets 5 s, the node's close_connection CLOSE_TIMEOUT.
    def close
      if @closed
        @bus.forget_lost(self)
        @released&.join(CLOSE_TIMEOUT + 5)
        return
      end

      @outbox&.close
      @closed = true
      @renewal_stop&.set
      begin
        call("close_connection", { "token" => @token }, [@timeout, CLOSE_TIMEOUT].min) if @token && !@channel.closed?
      rescue TransportError
        nil # already gone: closing is what we wanted
      end
      @channel.close
      @bus.untrack(self)
      @bus.forget_lost(self) # a failure while it closed: closing gives the link up all the same
      nil
    end

    def inspect
      "#<BerryMQ::Connection #{@style} #{@url}#{@closed ? ' closed' : ''}>"
    end

    private

    # Opens the session. connect_via_queue and interconnect send this client's max_size,
    # so that the node keeps what it sends here (a get's answer, its send_messages) within
    # what this client reads.
    def open_session(ttl)
      @ttl = ttl
      case @style
      when :oneway
        @token = session("connect_oneway", { "ttl" => ttl })
      when :queue
        @token = session("connect_via_queue", { "identifier" => @pattern.to_s, "ttl" => ttl, "max_size" => @max_size })
      when :interconnect
        @own_token = SecureRandom.urlsafe_base64(32, false)
        envelope = [Outbox::ENVELOPE, @max_size / 4].min
        @outbox = Outbox.new("forwarding to #{@url}", max_bytes: @max_size - envelope,
                                                      on_failure: method(:connection_lost),
                                                      on_loss: @bus.method(:count_loss)) do |batch|
          call("send_messages", { "token" => @token, "messages" => batch })
        end
        @token = session("interconnect", { "addr" => @channel.callback_url, "token" => @own_token, "ttl" => ttl,
                                           "max_size" => @max_size })
        @renewal_stop = Waiter.new
        @renewal = Thread.new { renew(@ttl) }
      else
        raise ArgumentError, "unknown style #{@style.inspect}"
      end
    end

    # The token +method+ answered; TransportError naming the node when the answer is not
    # one (docs/protocol.md, Sessions and tokens). A session asked for without a ttl
    # (DEFAULT_TTL) that the node refuses as over its max_ttl is asked for again with that
    # limit (@ttl becomes it), as a client that leaves ttl out gets it.
    def session(method, params)
      token = begin
        call(method, params)
      rescue RemoteError => e
        limit = @ttl_given ? nil : ttl_limit(e, params["ttl"])
        raise unless limit

        @ttl = limit
        call(method, params.merge("ttl" => limit))
      end
      return token if token.is_a?(String) && TOKEN.match?(token)

      raise TransportError, "#{@url} answered #{method} with a malformed token, #{token.inspect[0, 80]} (a token " \
                            "is 1 to 256 printable ASCII characters without spaces); no session was opened"
    end

    # The node's max_ttl when +error+ is its refusal of a ttl over it (Limit reached, with
    # data.setting "max_ttl" and the limit in data.limit) and a usable ttl below +asked+;
    # else nil.
    def ttl_limit(error, asked)
      data = error.data
      return nil unless error.code == JSONRPC::CODES[:limit_reached] && data.is_a?(Hash) && data["setting"] == "max_ttl"

      limit = data["limit"]
      limit.is_a?(Numeric) && limit.real? && limit.finite? && limit.positive? && limit < asked ? limit : nil
    end

    # Renews the interconnection's session every ttl/3 seconds while it is open, as the
    # protocol's clients do: a request naming its token (an empty send_messages, which
    # delivers nothing), since a node closes a session it hears nothing of for ttl seconds
    # (what it forwards here does not count). A renewal that finds the session or the
    # connection gone loses the connection (closed? is true, the loss is logged); one the
    # node did not answer in time is logged and tried again at the next turn.
    def renew(ttl)
      every = ttl / 3.0
      until @renewal_stop.wait(every, false)
        begin
          call("send_messages", { "token" => @token, "messages" => [] })
        rescue TransportError => e
          return if @closed

          gone = e.is_a?(ConnectionClosed) || (e.is_a?(RemoteError) && e.code == JSONRPC::CODES[:unknown_token])
          @bus.logger.error("renewing the session of #{@url} (#{@style}) failed: #{e.message}" \
                            "#{gone ? '' : '; trying again in ' + JSONRPC.seconds(every).to_s + ' s'}")
          next unless gone

          connection_lost(ConnectionClosed.new("renewing the session failed: #{e.message}"))
          return
        end
      end
    end

    def call(method, params, timeout = @timeout)
      if @closed && method != "close_connection"
        raise ConnectionClosed, "the connection to #{@url} (#{@style}) is closed"
      end

      params["secret"] = @secret if @secret
      @channel.call(method, params, timeout)
    rescue RemoteError => e
      raise unauthorised if e.code == JSONRPC::CODES[:unauthorised]
      raise unless method != "close_connection" && e.code == JSONRPC::CODES[:unknown_token] && params["token"]
      # closed (#close, in another thread) while the call waited: the node, which ended the
      # session, answers it Unknown or expired token
      if @closed # (closed meanwhile: by #close in another thread, or lost there)
        raise ConnectionClosed, "the connection to #{@url} (#{@style}) " +
                                (@lost ? "is lost: #{@lost.message}" : "was closed while #{method} waited")
      end

      # the session ended at the node (its ttl passed unused, or the node restarted): the
      # connection is lost, as when its node goes away
      lost = ConnectionClosed.new("the node no longer knows this connection to #{@url} (#{@style}): #{e.message}; " \
                                  "connect again")
      connection_lost(lost)
      raise lost
    end

    # A node's Unauthorised, naming the node and whether a secret was sent (the node's
    # answer says neither).
    def unauthorised
      why = if @secret
              "the secret given was refused (a wrong secret: not the node's shared secret)"
            else
              "no secret was given; pass secret: or set BERRYMQ_SECRET to the node's shared secret"
            end
      RemoteError.new(JSONRPC::CODES[:unauthorised], "#{@url} refused the request: Unauthorised", why)
    end

    # The Identifier of +identifier+; ArgumentError for a local one (its name starts with
    # "_"), which never leaves the process: raised before anything is sent.
    def remote_identifier(identifier)
      ident = Identifier.new(identifier)
      return ident unless ident.local?

      raise ArgumentError, "#{identifier.to_s.inspect} is a local identifier (its name starts with '_'); " \
                           "local messages never leave the process"
    end

    def need_queue(what)
      return if @style == :queue

      raise ArgumentError, "#{what} needs a connect_via_queue connection; this one is #{@style}"
    end

    # The Message of a get's answer. It was taken from the node's queue, so it is never
    # dropped: an identifier this library's tables refuse is taken as the node wrote it
    # (Identifier.from_node), and an answer that is no message at all raises
    # TransportError holding its whole text.
    def from_wire(entry)
      unless entry.is_a?(Array) && entry.size >= 3 && entry[1].is_a?(Array) && entry[2].is_a?(Hash)
        raise TransportError, "#{@url} answered a message that is not [identifier, args, kwargs]: " \
                              "#{JSON.generate(entry, max_nesting: false)}"
      end

      Message.new(Identifier.from_node(entry[0]), entry[1], entry[2])
    rescue InvalidIdentifier => e
      raise TransportError, "#{@url} answered a message whose identifier cannot be read (#{e.reason}); " \
                            "the message, taken from the queue: #{JSON.generate(entry, max_nesting: false)}"
    end

    # The connection broke under us (the TCP connection closed, forwarding failed, or a
    # renewal found the session gone): forget it, so that twitter no longer forwards to
    # it (the bus counts what it would have as lost); what was pending already failed.
    # Then, in a thread of its own (this may be the reader's or the outbox's): what the
    # outbox still holds is counted lost, the node's session is closed (best effort,
    # within CLOSE_TIMEOUT) and so is the channel, which stops receiving.
    def connection_lost(error)
      @open_lock.synchronize do
        return if @closed

        unless @open
          @early_loss ||= error # reported once the connect is done, if it succeeds
          return
        end
        @lost = error
        @closed = true
      end
      @renewal_stop&.set
      @bus.logger.error("the connection to #{@url} (#{@style}) is lost: #{error.message}")
      @bus.untrack(self, lost: error)
      @released = Thread.new { release(error) }
    end

    def release(error)
      @outbox&.abort(error)
      begin
        call("close_connection", { "token" => @token }, [@timeout, CLOSE_TIMEOUT].min) if @token && !@channel.closed?
      rescue StandardError
        nil # best effort: the node ends the session after its ttl anyway
      end
      @channel.close
    end

    # -- the node's requests to us (interconnect) ------------------------------------------

    # Answers one request the node sent: send_messages, send_message or ask.
    def answer(request)
      return JSONRPC.error_response(JSONRPC::CODES[:invalid_request], nil) unless request.is_a?(Hash)

      v1 = !request.key?("jsonrpc")
      id = request["id"]
      notification = v1 ? id.nil? : !request.key?("id")
      result = dispatch(request)
      notification ? nil : JSONRPC.result_response(result, id, v1: v1)
    rescue RemoteError => e
      notification ? nil : JSONRPC.error_response(e.code, id, e.data, v1: v1)
    rescue StandardError => e
      @bus.logger.error("answering #{request['method'].inspect} from #{@url} failed: #{e.class}: #{e.message}")
      notification ? nil : JSONRPC.error_response(JSONRPC::CODES[:internal_error], id, nil, v1: v1)
    end

    PARAMS = {
      "send_messages" => %w[token messages],
      "send_message" => %w[token identifier args kwargs],
      "ask" => %w[identifier args kwargs timeout token uid hops]
    }.freeze

    def dispatch(request)
      method = request["method"]
      params = request["params"] || {}
      unless method.is_a?(String) && (params.is_a?(Hash) || params.is_a?(Array))
        raise RemoteError.new(JSONRPC::CODES[:invalid_request], "Invalid Request")
      end
      raise RemoteError.new(JSONRPC::CODES[:method_not_found], "Method not found", method) unless PARAMS.key?(method)

      params = PARAMS[method].zip(params).to_h if params.is_a?(Array)
      case method
      when "send_messages" then take_messages(params)
      when "send_message" then take_messages(params, [[params["identifier"], params["args"] || [],
                                                        params["kwargs"] || {}, params]])
      else answer_ask(params)
      end
    end

    def take_messages(params, entries = params["messages"])
      unless params["token"].is_a?(String) && @own_token && params["token"] == @own_token
        raise RemoteError.new(JSONRPC::CODES[:unknown_token], "Unknown or expired token")
      end
      invalid("'messages' must be an array") unless entries.is_a?(Array)

      unreadable = []
      messages = entries.each_with_index.map do |entry, index|
        message_of(entry, "messages[#{index}]")
      rescue InvalidIdentifier => e
        # the node checked it: refused here (and counted by the node), never the batch
        @bus.logger.error("#{@url} sent messages[#{index}] with an identifier this library cannot read " \
                          "(#{e.reason}); it was refused: #{JSON.generate(entry, max_nesting: false)[0, 300]}")
        unreadable << index
        nil
      end
      refused = unreadable.dup
      messages.each_with_index do |message, index|
        next unless message

        @bus.receive(message, self)
      rescue QueueFull
        refused << index
      rescue ReceiverErrors => e
        refused << index if e.errors.any? { |x| x.is_a?(QueueFull) }
      end
      return "ok" if refused.empty?

      data = { "refused" => refused.sort }
      data["detail"] = "messages #{unreadable} have identifiers this client cannot read" unless unreadable.empty?
      raise RemoteError.new(JSONRPC::CODES[:queue_full], "Queue is full", data)
    end

    def message_of(entry, where)
      invalid("#{where} must be [identifier, args, kwargs(, extras)]") unless entry.is_a?(Array) && entry.size >= 3
      identifier, args, kwargs, extras = entry
      extras = {} unless extras.is_a?(Hash)
      invalid("#{where}: args must be an array") unless args.is_a?(Array)
      invalid("#{where}: kwargs must be an object") unless kwargs.is_a?(Hash)
      invalid("#{where}: the identifier must be a string") unless identifier.is_a?(String)
      ident = Identifier.from_node(identifier) # the node checked it: raises only for what no node writes
      invalid("#{where}: #{ident} is local; local messages never leave their process") if ident.local?
      uid = extras["uid"].is_a?(String) ? extras["uid"] : nil
      hops = extras["hops"].is_a?(Integer) && extras["hops"] >= 0 ? extras["hops"] : 0
      Message.new(ident, args, kwargs, uid: uid, hops: hops + 1)
    end

    def answer_ask(params)
      # the node sends the token it was given with every ask, as with its messages: a
      # caller without it is not the node
      unless params["token"].is_a?(String) && @own_token && params["token"] == @own_token
        raise RemoteError.new(JSONRPC::CODES[:unknown_token], "Unknown or expired token")
      end

      message = message_of([params["identifier"], params["args"] || [], params["kwargs"] || {}, params], "the request")
      # a uid is answered once, as a node answers it: an asker with several connections to
      # this process asks over each with the same uid (and one of this process's own asks
      # coming back is not answered here)
      return [] if message.uid && !@bus.first_sight?(message.uid)

      @bus.ask_local(message).map do |reply|
        next { "error" => reply.to_h } if reply.is_a?(ReplyError)

        begin
          JSONRPC.check(reply, "the reply", JSONRPC::MAX_MESSAGE_NESTING)
          { "value" => reply }
        rescue ArgumentError => e
          why = e.message.include?("levels deep") ? "the reply is nested more than #{JSONRPC::MAX_MESSAGE_NESTING} " \
                                                     "levels deep, the limit" : "the reply #{reply.class} is not JSON"
          { "error" => ReplyError.new("TypeError", why, "", @bus.node_id).to_h }
        end
      end
    end

    def invalid(why)
      raise RemoteError.new(JSONRPC::CODES[:invalid_params], "Invalid params", why)
    end
  end
end
